//! lb's own request loop against Pingora's `HttpProxy`: the same corpus of client requests
//! (methods, bodies, chunked, pipelined, HTTP/1.0, hostile heads, upgrades, lb's own answers,
//! backend failures and every kind of response framing) goes through an lb with its own loop
//! and an lb with `LB_PROXY_PATH=pingora`, each before its own recording backend; what the
//! clients receive and what the backends receive must be the same bytes (the `Date` value
//! aside, and where a re-chunked body is cut into chunks, which depends on timing in both), and
//! the first lb must have served the common requests itself.

mod common;

use common::raw::read_all;
use common::{eventually, Lb, PATIENCE};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Makes the proxy path under test explicit, whatever the test run's environment says.
const PATH_ENV: &str = "LB_PROXY_PATH";

/// The backend's answer to `/s/<name>` (or `/st/<name>`): parts written after their delays,
/// and whether the backend closes the connection afterwards.
fn script(name: &str, head: bool) -> (Vec<(u64, Vec<u8>)>, bool) {
    let now = |bytes: &[u8]| vec![(0, bytes.to_vec())];
    match name {
        "ok" if head => (now(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"), false),
        "ok" => (now(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"), false),
        "chunked" => (
            now(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            false,
        ),
        "streamed" => (
            vec![
                (0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n".to_vec()),
                (50, b"6\r\nsecond\r\n0\r\n\r\n".to_vec()),
            ],
            false,
        ),
        "until-close" => (now(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nread until the end"), true),
        "no-content" => (now(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"), false),
        "not-modified" => (now(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"), false),
        "hop-by-hop" => (
            now(b"HTTP/1.1 200 OK\r\nConnection: x-secret, keep-alive\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nX-Kept: k\r\nContent-Length: 2\r\n\r\nok"),
            false,
        ),
        "cookies" => (
            now(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Mid: m\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"),
            false,
        ),
        "early-hints" => (
            now(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            false,
        ),
        "error" => (now(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"), false),
        "same-lengths" => (now(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"), false),
        "lower-case" => (now(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-lower: v\r\n\r\nok"), false),
        "big" => {
            let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\n\r\n".to_vec();
            bytes.extend((0..102_400u32).map(|i| b'a' + (i % 26) as u8));
            (now(&bytes), false)
        }
        "slow" => (vec![(100, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow".to_vec())], false),
        "backend-closes" => (now(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye"), true),
        "hang-up" => (Vec::new(), true),
        "garbage" => (now(b"this is not HTTP\r\n\r\n"), true),
        "switch" => (
            now(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            true,
        ),
        _ => (now(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), false),
    }
}

/// A keep-alive backend that records every request (head and body, as received) and answers
/// by [`script`].
struct Recorder {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections the backend is done with (closed).
    closed: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// A recorder that keeps idle connections open.
    async fn start() -> Recorder {
        Self::start_closing_idle(Duration::from_secs(3600)).await
    }

    /// A recorder that closes connections idle for `idle`.
    async fn start_closing_idle(idle: Duration) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (seen, accepted, done) = (Arc::clone(&log), Arc::clone(&connections), Arc::clone(&closed));
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
                tokio::spawn(async move {
                    answer(conn, seen, idle).await;
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
        Recorder {
            addr,
            log,
            connections,
            closed,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn closed(&self) -> usize {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn requests(&self) -> Vec<String> {
        let log = self.log.lock().expect("lock");
        log.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the head ends in `buf`, and the body's framing: `Some(n)` bytes, or `None` for chunked.
fn head_end(buf: &[u8]) -> Option<(usize, Option<usize>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let chunked = head.contains("\r\ntransfer-encoding: chunked");
    let length = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((end, (!chunked).then_some(length)))
}

/// Reads one whole request off `conn` (`buf` keeps what follows it).
async fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 16384];
    loop {
        if let Some((end, framing)) = head_end(buf) {
            let total = match framing {
                Some(n) => (buf.len() >= end + n).then_some(end + n),
                None => buf[end..]
                    .windows(5)
                    .position(|w| w == b"0\r\n\r\n")
                    .filter(|at| *at == 0 || buf[end + at - 2..end + at] == *b"\r\n")
                    .map(|at| end + at + 5),
            };
            if let Some(total) = total {
                return Some(buf.drain(..total).collect());
            }
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn answer(mut conn: TcpStream, log: Arc<Mutex<Vec<Vec<u8>>>>, idle: Duration) {
    let mut buf = Vec::new();
    while let Ok(Some(request)) = tokio::time::timeout(idle, read_request(&mut conn, &mut buf)).await {
        log.lock().expect("lock").push(request.clone());
        let line = String::from_utf8_lossy(&request)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let head = line.starts_with("HEAD ");
        let path = line.split(' ').nth(1).unwrap_or_default();
        let name = path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default();
        let (parts, close) = script(name, head);
        for (delay, bytes) in parts {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if conn.write_all(&bytes).await.is_err() {
                return;
            }
        }
        if close {
            let _ = conn.shutdown().await;
            return;
        }
    }
}

/// The request that ends every exchange: the client's connection closes after its answer.
const CLOSER: &[u8] = b"GET /s/ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// The client side of the corpus: each entry is written at once (pipelined requests are
/// several in one entry) and followed by [`CLOSER`].
fn corpus() -> Vec<Vec<u8>> {
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes();
    let mut corpus = vec![
        get("/s/ok"),
        get("/s/ok?x=1&y=%20z"),
        b"HEAD /s/ok HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"DELETE /s/ok HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"OPTIONS /s/ok HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nhost: t\r\nx-Custom-Thing: A\r\nUSER-AGENT: z\r\nAccept: */*\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.1\r\nVia: 1.0 fred\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        // Pipelined.
        [get("/s/ok"), get("/s/chunked"), get("/s/no-content")].concat(),
        // Request bodies.
        b"POST /s/ok HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        b"PUT /s/ok HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
        b"POST /s/ok HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi".to_vec(),
        // Hop-by-hop fields (both loops drop the same ones; a `Connection` naming a field the
        // proxy needs is refused) and fields the proxy answers.
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, X-A, x-b\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\nTrailer: X-T\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nConnection: host\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nConnection: content-length\r\n\r\n".to_vec(),
        b"OPTIONS /s/ok HTTP/1.1\r\nHost: t\r\nMax-Forwards: 0\r\n\r\n".to_vec(),
        b"TRACE /s/ok HTTP/1.1\r\nHost: t\r\nMax-Forwards: 2\r\n\r\n".to_vec(),
        b"GET /nowhere HTTP/1.1\r\nHost: t\r\nMax-Forwards: 0\r\n\r\n".to_vec(),
        // Absolute form: Pingora's loop in both.
        b"GET http://t/s/ok HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET /s/switch HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(),
        // lb's own answers: no route, a dead pool, a route's guards (a rate limit of one request
        // with no refill in the test's time, redirect mode).
        get("/nowhere"),
        get("/dead/ok"),
        get("/limited/ok"),
        get("/limited/ok"),
        get("/redirect/ok?q=1"),
        // Hostile heads (the front answers them before either loop).
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        b"GET /s/ok HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n".to_vec(),
        // Sticky cookies.
        get("/st/ok"),
        // Traffic rules: match conditions, a stripped prefix, a regex rewrite, header edits both
        // ways, access control.
        b"GET /r/s/ok?q=1 HTTP/1.1\r\nHost: t\r\nX-Internal: secret\r\nX-Env: dev\r\n\r\n".to_vec(),
        b"POST /r/s/ok HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
        b"DELETE /r/s/ok HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
        b"GET /r/s/ok HTTP/1.1\r\nHost: t\r\nX-Skip: 1\r\n\r\n".to_vec(),
        get("/old/ok?v=12"),
        get("/old/ok?v=x"),
        get("/denied/ok"),
    ];
    for name in [
        "chunked",
        "streamed",
        "until-close",
        "no-content",
        "not-modified",
        "hop-by-hop",
        "cookies",
        "early-hints",
        "error",
        "same-lengths",
        "lower-case",
        "big",
        "slow",
        "backend-closes",
        "hang-up",
        "garbage",
        "switch",
    ] {
        corpus.push(get(&format!("/s/{name}")));
    }
    corpus.push(b"HEAD /s/chunked HTTP/1.1\r\nHost: t\r\n\r\n".to_vec());
    // HTTP/1.0 without Host, last: it closes the connection.
    corpus.push(b"GET /s/ok HTTP/1.0\r\n\r\n".to_vec());
    corpus
}

/// A chunked body at the start of `bytes`: its data and its length in `bytes`.
fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let line = bytes[at..].windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&bytes[at..at + line]).ok()?, 16).ok()?;
        at += line + 2;
        if size == 0 {
            return (bytes.get(at..at + 2)? == b"\r\n").then_some((data, at + 2));
        }
        data.extend_from_slice(bytes.get(at..at + size)?);
        at += size;
        if bytes.get(at..at + 2)? != b"\r\n" {
            return None;
        }
        at += 2;
    }
}

/// `bytes` with every chunked body written as one chunk: where a re-chunked body is cut
/// depends on when its pieces arrive (in Pingora's loop as in lb's), its data does not.
fn one_chunk(bytes: &[u8]) -> Vec<u8> {
    const CHUNKED: &[u8] = b"Transfer-Encoding: chunked\r\n";
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(te) = rest.windows(CHUNKED.len()).position(|w| w == CHUNKED) {
        let Some(end) = rest[te..].windows(4).position(|w| w == b"\r\n\r\n").map(|e| te + e + 4) else {
            break;
        };
        out.extend_from_slice(&rest[..end]);
        rest = &rest[end..];
        if let Some((data, used)) = dechunk(rest) {
            if !data.is_empty() {
                out.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            rest = &rest[used..];
        }
    }
    out.extend_from_slice(rest);
    out
}

/// The `Date` value, which differs from second to second, and the request id, which differs
/// from request to request, masked.
fn without_dates(text: &str) -> String {
    text.split("\r\n")
        .map(|line| match line.split_once(": ") {
            Some((name, _)) if name.eq_ignore_ascii_case("date") => "Date: -",
            Some((name, _)) if name.eq_ignore_ascii_case("x-request-id") => "X-Request-Id: -",
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn yaml(backend: SocketAddr, dead: SocketAddr, metrics: SocketAddr) -> String {
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
access_log: {{path: \"{{dir}}/access.log\"}}
metrics: {{address: \"{metrics}\"}}
upstreams:
  web:
    backends: [{{address: \"{backend}\"}}]
  sticky:
    algorithm: sticky
    sticky: {{cookie: SRV, ttl: 1h}}
    backends: [{{address: \"{backend}\"}}]
  dead:
    backends: [{{address: \"{dead}\"}}]
routes:
  - {{path_prefix: /s/, upstream: web}}
  - {{path_prefix: /st/, upstream: sticky}}
  - {{path_prefix: /dead/, upstream: dead}}
  - {{path_prefix: /limited/, upstream: web, rate_limit: {{requests_per_second: 0.001, burst: 1}}}}
  - {{path_prefix: /redirect/, upstream: web, redirect: 307}}
  - name: rules
    match: {{path_prefix: /r/, methods: [GET, HEAD, POST], headers: {{X-Skip: {{present: false}}}}}}
    upstream: web
    request:
      strip_prefix: /r
      set_headers: {{Host: internal.api, X-Client: \"$client_ip via $scheme for $host\"}}
      add_headers: {{X-Env: prod}}
      remove_headers: [X-Internal]
    response:
      set_headers: {{Strict-Transport-Security: max-age=63072000}}
      add_headers: {{X-Served-By: lb}}
      remove_headers: [Content-Type]
  - match: {{path_regex: \"^/old/[a-z]+$\", query: {{v: {{regex: \"^[0-9]+$\"}}}}}}
    upstream: web
    request: {{rewrite: {{regex: \"^/old/(.*)$\", replace: /s/$1}}}}
  - {{path_prefix: /denied/, upstream: web, access: {{deny: [127.0.0.0/8]}}}}
"
    )
}

/// Plays the corpus through `lb` (each entry on a new connection, then the closer): what the
/// client received for each entry.
async fn play(lb: SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    for entry in corpus() {
        let mut conn = TcpStream::connect(lb).await.expect("connect");
        conn.write_all(&[entry.as_slice(), CLOSER].concat())
            .await
            .expect("write");
        let answer = read_all(&mut conn, Duration::from_secs(10)).await;
        assert!(
            answer.closed,
            "{lb}: no close after {:?}",
            String::from_utf8_lossy(&entry)
        );
        out.push(without_dates(&String::from_utf8_lossy(&one_chunk(&answer.bytes))));
    }
    out
}

/// `lb_http1_requests_total` of `path` at `metrics`.
async fn proxied_by(metrics: SocketAddr, path: &str) -> u64 {
    let text = common::client::get(metrics, "/metrics")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    let sample = format!("lb_http1_requests_total{{path=\"{path}\"}}");
    common::metric_value(&text, &sample).map_or(0, |n| n as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lbs_own_loop_and_pingoras_give_the_same_bytes_to_clients_and_backends() {
    let dead = common::free_addr();
    let backend = Recorder::start().await;
    let (own_metrics, pingora_metrics) = (common::free_addr(), common::free_addr());
    let own = Lb::start_env(&yaml(backend.addr, dead, own_metrics), &[], &[(PATH_ENV, None)]);
    let pingora = Lb::start_env(
        &yaml(backend.addr, dead, pingora_metrics),
        &[],
        &[(PATH_ENV, Some("pingora"))],
    );

    // One backend for both (sticky ids and the Host given to HTTP/1.0 name its address), one
    // lb after the other.
    let own_answers = play(own.addr).await;
    let own_count = backend.requests().len();
    let pingora_answers = play(pingora.addr).await;
    let mut pingora_requests = backend.requests().split_off(own_count);
    let mut own_requests = backend.requests();
    own_requests.truncate(own_count);
    // A request that failed on a reused backend connection is sent again (to a new one):
    // whether the connection was a reused one depends on timing (in Pingora's pool, when a
    // released connection becomes available), so a repeat is not a difference.
    own_requests.dedup();
    pingora_requests.dedup();
    for ((entry, mine), theirs) in corpus().iter().zip(&own_answers).zip(&pingora_answers) {
        assert_eq!(
            mine,
            theirs,
            "the clients got different answers to {:?}",
            String::from_utf8_lossy(entry)
        );
    }
    assert_eq!(
        own_requests.len(),
        pingora_requests.len(),
        "{own_requests:#?}\n{pingora_requests:#?}"
    );
    for (mine, theirs) in own_requests.iter().zip(&pingora_requests) {
        let (mine, theirs) = (without_dates(mine), without_dates(theirs));
        assert_eq!(mine, theirs, "the backend got different requests");
    }

    // Requests without a body in origin form were served by lb's own loop (lb's own answers
    // and hop-by-hop fields included: one admission decision, one sanitizer), the rest (bodies,
    // upgrades, absolute form) by Pingora's; with LB_PROXY_PATH=pingora, all by Pingora's.
    let counted = async |metrics, lb, pingora| {
        eventually(PATIENCE, async || {
            proxied_by(metrics, "lb").await == lb && proxied_by(metrics, "pingora").await == pingora
        })
        .await
    };
    assert!(
        counted(own_metrics, 103, 6).await,
        "lb's own loop: {}, Pingora's: {}",
        proxied_by(own_metrics, "lb").await,
        proxied_by(own_metrics, "pingora").await
    );
    assert!(
        counted(pingora_metrics, 0, 109).await,
        "with LB_PROXY_PATH=pingora, lb's own loop: {}, Pingora's: {}",
        proxied_by(pingora_metrics, "lb").await,
        proxied_by(pingora_metrics, "pingora").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_backend_connections_are_reused_and_dropped_once_the_backend_closes_them() {
    let backend = Recorder::start_closing_idle(Duration::from_millis(200)).await;
    let metrics = common::free_addr();
    let lb = Lb::start_env(
        &yaml(backend.addr, common::free_addr(), metrics),
        &[],
        &[(PATH_ENV, None)],
    );
    let get = async || {
        let request = b"GET /s/ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        common::raw::send(lb.addr, request, Duration::from_secs(10))
            .await
            .status()
    };

    // Five clients one after the other: one backend connection carries all five requests.
    for _ in 0..5 {
        assert_eq!(get().await, 200);
    }
    assert_eq!(backend.connections(), 1);
    // The backend closes it while it is idle: the next request finds it closed when it takes
    // it, and opens another, with no failed attempt.
    assert!(eventually(PATIENCE, async || backend.closed() == 1).await);
    assert_eq!(get().await, 200);
    assert_eq!(backend.connections(), 2);
    let text = common::client::get(metrics, "/metrics")
        .await
        .map(|r| r.text())
        .unwrap_or_default();
    assert!(text.contains("lb_retries_total{pool=\"web\"} 0\n"), "{text}");
    assert!(
        text.contains("lb_requests_total{pool=\"web\",code=\"2xx\"} 6\n"),
        "{text}"
    );
    assert!(text.contains("lb_http1_requests_total{path=\"lb\"} 6\n"), "{text}");
}
