//! The request path in process, on both loops: the front, the admission, lb's own loop
//! (`proxy::direct`) and Pingora's (`proxy`'s hooks) as `server` wires them from a YAML
//! configuration, over real loopback connections to backends started here. What the front
//! decides (pipelining, limits, timeouts, the stop), what the backend sees of a request, and
//! what the client sees of a failing backend, each the same whichever loop serves it.

use super::listeners::{client_rules, edge};
use crate::config::Config;
use crate::control::runtime::{Loader, Runtime};
use crate::request::front::listener::ListenerRule;
use crate::request::front::{Front, FrontStats};
use crate::request::proxy::Lb;
use crate::request::traffic::Traffic;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream;
use pingora_core::protocols::GetSocketDigest;
use pingora_core::protocols::SocketDigest;
use pingora_core::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

/// Generous: the suite runs tests in parallel on a busy machine.
const DEADLINE: Duration = Duration::from_secs(20);

/// What a test backend does with each request.
#[derive(Clone, Copy)]
pub(super) enum Backend {
    /// Answers `200` with `backend\n`, keeping the connection.
    Answer,
    /// Answers as [`Backend::Answer`] after this long.
    Slow(Duration),
    /// Closes without a word.
    Close,
    /// Promises 100 bytes of body, sends 10, closes.
    CutBody,
}

/// The request heads a backend received, in order.
pub(super) type Seen = Arc<Mutex<Vec<String>>>;

/// The length of the body `head` announces.
fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Serves one backend connection as `behaviour` says, recording each head in `seen`.
async fn backend_conn(mut conn: TcpStream, behaviour: Backend, seen: Seen) {
    let mut buf = vec![0u8; 8192];
    let mut held = Vec::new();
    loop {
        let Some(end) = held.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => held.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&held[..end]).into_owned();
        let total = end + 4 + content_length(&head);
        while held.len() < total {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => held.extend_from_slice(&buf[..n]),
            }
        }
        let body = String::from_utf8_lossy(&held[end + 4..total]).into_owned();
        held.drain(..total);
        seen.lock().expect("lock").push(format!("{head}\r\n\r\n{body}"));
        let answer: &[u8] = match behaviour {
            Backend::Answer => b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nbackend\n",
            Backend::Slow(delay) => {
                tokio::time::sleep(delay).await;
                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nbackend\n"
            }
            Backend::Close => return,
            Backend::CutBody => {
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                    .await;
                return;
            }
        };
        if conn.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// A backend on a port of its own.
pub(super) async fn backend(behaviour: Backend) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Seen::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(backend_conn(conn, behaviour, Arc::clone(&record)));
        }
    });
    (addr, seen)
}

/// A loopback port nothing listens on (bound, then let go).
async fn dead_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// lb's request path on a port of its own: the front over both loops (lb's own on when
/// `direct`), configured by `yaml` (everything but `listeners:`).
struct Stack {
    addr: SocketAddr,
    stats: Arc<FrontStats>,
    runtime: Arc<Runtime>,
    stop: watch::Sender<bool>,
}

/// Serves `listener` with the front over `lb` as `proxy_service` wires it (lb's own loop when
/// `lb.direct_enabled()`), under `config`'s client rules: the front's counters, and the switch
/// that stops it.
pub(super) fn serve(
    listener: TcpListener,
    lb: &Lb,
    traffic: Arc<Traffic>,
    config: &Config,
) -> (Arc<FrontStats>, watch::Sender<bool>) {
    let addr = listener.local_addr().expect("addr");
    let stats = Arc::new(FrontStats::default());
    let rule = ListenerRule::new(addr, false, false, false, 64, Arc::new(Vec::new()));
    let conf = Arc::new(ServerConf::default());
    let front = Arc::new(Front::new(
        pingora_proxy::http_proxy(&conf, lb.clone()),
        None,
        lb.direct_enabled().then(|| lb.clone()),
        vec![rule],
        client_rules(config),
        traffic,
        Arc::clone(&stats),
        None,
    ));
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let (front, shutdown) = (Arc::clone(&front), shutdown.clone());
            tokio::spawn(async move { front.process_new(accepted(conn), &shutdown).await });
        }
    });
    (stats, stop)
}

/// Waits until the front has counted `n` requests proxied (each connection's task counts its
/// last request after the client has read the answer): `(by lb's loop, by Pingora's)`.
pub(super) async fn proxied(stats: &FrontStats, n: u64) -> (u64, u64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let [(_, lb), (_, pingora)] = stats.paths();
        if lb + pingora >= n || Instant::now() > deadline {
            return (lb, pingora);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Stack {
    async fn start(yaml: &str, direct: bool) -> Stack {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let yaml = format!("listeners: [{{address: \"{addr}\"}}]\n{yaml}");
        let config = Config::parse_str(&yaml, "test.yaml").expect("parses");
        config.validate("test.yaml").expect("valid");
        let loader: Loader = Box::new(|| {
            Err(crate::config::ConfigError::Invalid {
                file: "test.yaml".into(),
                path: String::new(),
                message: "no reloads here".into(),
            })
        });
        let runtime = Runtime::new(config.clone(), loader, None).expect("runtime");
        let traffic = Traffic::new();
        let mut settings = edge(&config);
        settings.direct = direct;
        let lb = Lb::new(Arc::clone(runtime.routing()), Arc::clone(&traffic), None, settings);
        let (stats, stop) = serve(listener, &lb, traffic, &config);
        Stack {
            addr,
            stats,
            runtime,
            stop,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }

    /// Everything the client reads after sending `bytes`, until lb closes the connection.
    async fn exchange(&self, bytes: &[u8]) -> String {
        let mut client = self.connect().await;
        client.write_all(bytes).await.expect("write");
        read_to_close(&mut client).await
    }
}

/// What `client` reads until the other end closes.
pub(super) async fn read_to_close(client: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = timeout(DEADLINE, client.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "no close within {DEADLINE:?}: {}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads from `client` until `got` holds one whole response of `backend\n` more.
async fn read_answer(client: &mut TcpStream, got: &mut String) {
    let want = got.matches("backend\n").count() + 1;
    let mut buf = [0u8; 4096];
    while got.matches("backend\n").count() < want {
        let n = timeout(DEADLINE, client.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed before the answer: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// The status codes in `answers`, in order.
pub(super) fn statuses(answers: &str) -> Vec<&str> {
    answers
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|a| a.split(' ').next())
        .collect()
}

fn pool(backends: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|a| format!("{{address: \"{a}\"}}")).collect();
    format!("upstreams: {{web: {{backends: [{}]{extra}}}}}\n", list.join(", "))
}

const LOOPS: [bool; 2] = [true, false];

fn loop_name(direct: bool) -> &'static str {
    if direct {
        "lb's loop"
    } else {
        "Pingora's loop"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_and_a_body_goes_to_pingoras_loop() {
    for direct in LOOPS {
        let (backend, seen) = backend(Backend::Answer).await;
        let lb = Stack::start(&pool(&[backend], ""), direct).await;
        let answers = lb
            .exchange(
                b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nPOST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
            .await;
        assert_eq!(
            statuses(&answers),
            ["200", "200", "200"],
            "{}: {answers}",
            loop_name(direct)
        );
        let seen = seen.lock().expect("lock").clone();
        let lines: Vec<&str> = seen.iter().filter_map(|h| h.lines().next()).collect();
        assert_eq!(lines, ["GET /a HTTP/1.1", "POST /b HTTP/1.1", "GET /c HTTP/1.1"]);
        assert!(seen[1].ends_with("\r\n\r\nhello"), "{}", seen[1]);
        let want = if direct { (2, 1) } else { (0, 3) };
        assert_eq!(proxied(&lb.stats, 3).await, want, "{}", loop_name(direct));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_request_a_connection_may_carry_says_close_and_the_rest_is_not_served() {
    for direct in LOOPS {
        let (backend, seen) = backend(Backend::Answer).await;
        let yaml = format!("clients: {{keepalive_requests: 2}}\n{}", pool(&[backend], ""));
        let lb = Stack::start(&yaml, direct).await;
        let get = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        let answers = lb.exchange(&get.repeat(3)).await;
        assert_eq!(statuses(&answers), ["200", "200"], "{}: {answers}", loop_name(direct));
        let second = answers
            .rsplit("HTTP/1.1 ")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(second.contains("connection: close"), "{}: {answers}", loop_name(direct));
        assert_eq!(seen.lock().expect("lock").len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_slow_and_oversized_heads_are_answered_by_the_front_and_never_reach_the_backend() {
    for direct in LOOPS {
        let (backend, seen) = backend(Backend::Answer).await;
        let yaml = format!(
            "clients: {{header_timeout: 300ms, max_body_size: 1KiB}}\n{}",
            pool(&[backend], "")
        );
        let lb = Stack::start(&yaml, direct).await;
        let cases: [(&[u8], &str); 4] = [
            (b"GET / HTTP/1.1\r\nHost: t\r\nBad Field: x\r\n\r\n", "400"),
            (b"GET / HTTP/1.1\r\nHost: t\r\n", "408"),
            // No body follows: the answer comes from the head alone.
            (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n", "413"),
            (
                b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n",
                "413",
            ),
        ];
        for (request, status) in cases {
            let answer = lb.exchange(request).await;
            assert_eq!(statuses(&answer), [status], "{}: {answer}", loop_name(direct));
            assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
        }
        assert!(seen.lock().expect("lock").is_empty());
        assert_eq!(lb.stats.paths(), [("lb", 0), ("pingora", 0)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_keepalive_timeout() {
    for direct in LOOPS {
        let (backend, _) = backend(Backend::Answer).await;
        let yaml = format!("clients: {{keepalive_timeout: 300ms}}\n{}", pool(&[backend], ""));
        let lb = Stack::start(&yaml, direct).await;
        let mut client = lb.connect().await;
        let mut got = String::new();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        read_answer(&mut client, &mut got).await;
        let answered = Instant::now();
        let rest = read_to_close(&mut client).await;
        assert!(rest.is_empty(), "nothing more: {rest}");
        assert!(
            answered.elapsed() >= Duration::from_millis(250),
            "{:?}",
            answered.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_stop_a_request_in_flight_finishes_and_every_connection_closes() {
    for direct in LOOPS {
        let (slow, _) = backend(Backend::Slow(Duration::from_millis(500))).await;
        let lb = Stack::start(&pool(&[slow], ""), direct).await;
        let mut idle = lb.connect().await;
        let mut got = String::new();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        read_answer(&mut idle, &mut got).await;

        let mut busy = lb.connect().await;
        busy.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("write");
        // The request is on its way to the backend when the stop comes.
        let deadline = Instant::now() + DEADLINE;
        while lb.runtime.routing().load().pools["web"].states().all()[0].inflight() == 0 {
            assert!(Instant::now() < deadline, "the request never reached the pool");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        lb.stop.send(true).expect("stop");
        let answer = read_to_close(&mut busy).await;
        assert_eq!(statuses(&answer), ["200"], "{}: {answer}", loop_name(direct));
        assert!(read_to_close(&mut idle).await.is_empty(), "the idle one closes quietly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_sees_the_same_cleaned_head_from_both_loops() {
    let mut heads = Vec::new();
    for direct in LOOPS {
        let (backend, seen) = backend(Backend::Answer).await;
        let lb = Stack::start(&pool(&[backend], ""), direct).await;
        let answers = lb
            .exchange(
                b"GET /p?q=1 HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-Keep: 2\r\nX-Forwarded-For: 192.0.2.1\r\n\r\nGET /done HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
            .await;
        assert_eq!(statuses(&answers), ["200", "200"], "{}: {answers}", loop_name(direct));
        let head = seen.lock().expect("lock")[0].to_ascii_lowercase();
        // The request id differs from request to request.
        let mut fields: Vec<String> = head
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty() && !l.starts_with("x-request-id:"))
            .map(str::to_string)
            .collect();
        fields.sort();
        for gone in ["connection", "x-drop", "keep-alive", "te:", "proxy-connection"] {
            assert!(
                !fields.iter().any(|f| f.starts_with(gone)),
                "{}: {gone} in {fields:?}",
                loop_name(direct)
            );
        }
        assert!(head.starts_with("get /p?q=1 http/1.1"), "{head}");
        assert!(fields.contains(&"x-keep: 2".to_string()), "{fields:?}");
        // The client is appended to what came, as nginx's $proxy_add_x_forwarded_for.
        let xff = "x-forwarded-for: 192.0.2.1, 127.0.0.1".to_string();
        assert!(fields.contains(&xff), "{fields:?}");
        heads.push(fields);
    }
    assert_eq!(heads[0], heads[1], "lb's loop and Pingora's send the same fields");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_on_the_next_backend_and_a_dead_pool_is_a_fast_503() {
    for direct in LOOPS {
        let dead = dead_port().await;
        let (live, seen) = backend(Backend::Answer).await;
        let lb = Stack::start(&pool(&[dead, live], ", retries: 1"), direct).await;
        let get = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        let mut four = get.repeat(3);
        four.extend_from_slice(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let answers = lb.exchange(&four).await;
        assert_eq!(statuses(&answers), ["200"; 4], "{}: {answers}", loop_name(direct));
        assert_eq!(seen.lock().expect("lock").len(), 4);
        let view = lb.runtime.pool("web").await.expect("the pool");
        assert!(view.retries >= 1, "{}: {} retries", loop_name(direct), view.retries);

        let lb = Stack::start(&pool(&[dead_port().await], ""), direct).await;
        let started = Instant::now();
        let answer = lb.exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        // The failed connect is retried within the pool's default retries; with no other
        // backend to try, the retry finds none: 503, as HAProxy's "no server is available".
        assert_eq!(statuses(&answer), ["503"], "{}: {answer}", loop_name(direct));
        assert!(answer.ends_with("no backend is available\n"), "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "fast: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_fails_mid_way_gives_a_502_or_a_visibly_cut_response() {
    for direct in LOOPS {
        let (closing, _) = backend(Backend::Close).await;
        let lb = Stack::start(&pool(&[closing], ""), direct).await;
        let answer = lb.exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(statuses(&answer), ["502"], "{}: {answer}", loop_name(direct));

        let (cutting, _) = backend(Backend::CutBody).await;
        let lb = Stack::start(&pool(&[cutting], ""), direct).await;
        let answer = lb.exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(statuses(&answer), ["200"], "{}: {answer}", loop_name(direct));
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(answer.to_ascii_lowercase().contains("content-length: 100"), "{answer}");
        assert_eq!(
            body,
            "0123456789",
            "{}: the client sees fewer bytes than promised",
            loop_name(direct)
        );
    }
}

/// `conn` as Pingora's listener hands it over: with its socket digest (peer and local address).
pub(super) fn accepted(conn: TcpStream) -> pingora_core::protocols::Stream {
    let mut stream = Stream::from(conn);
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    stream.set_socket_digest(digest);
    Box::new(stream)
}
