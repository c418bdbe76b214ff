//! Hostile HTTP/1 and TLS clients through the real binary: TLS handshakes that stall half-way,
//! tens of thousands of connections beyond `max_connections`, running out of file descriptors,
//! bodies that drip, huge chunk extensions and overflowing chunk sizes, heads with thousands of
//! fields. Each gets its status or a bounded close and is counted, while a bystander is served
//! (its p99, lb's CPU and memory reported).

mod common;

use common::certs::{curl, make};
use common::raw::send;
use common::watch::{counted, metric, watched, watched_from, Usage};
use common::{eventually, get, Demo, Guard, Lb, TempDir, PATIENCE};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The pools of every test here: `web` (the attacked) and `others` (the bystander's `/others/`).
fn pools(web: &Demo, others: &Demo) -> String {
    format!(
        "upstreams:
  web:
    backends: [{}]
  others:
    backends: [{}]
routes:
  - {{path_prefix: /others/, upstream: others}}
  - {{path_prefix: /, upstream: web}}
",
        web.yaml(),
        others.yaml()
    )
}

/// Reads from `conn` until the server closes it or `limit` passes: (closed, bytes read).
async fn read_to_close(conn: &mut TcpStream, limit: Duration) -> (bool, Vec<u8>) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, seen),
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
            Err(_) => return (false, seen),
        }
    }
}

/// Raises this process's open-files limit to its hard limit (floods need many sockets).
fn more_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_that_stall_are_cut_off_at_the_handshake_timeout() {
    let certs = TempDir::new("hostile-tls");
    let (cert, key) = make(&certs, "example", &["example.com"]);
    let (web, others) = (Demo::start("web"), Demo::start("others"));
    let lb = Lb::start(&format!(
        "listeners:
  - address: \"{{listen}}\"
  - address: \"{{tls}}\"
    tls: {{certificates: [{{cert: \"{}\", key: \"{}\"}}]}}
  - address: \"{{other}}\"
    tls: {{certificates: [{{cert: \"{}\", key: \"{}\"}}]}}
    proxy_protocol: true
admin: {{address: \"{{admin}}\"}}
clients: {{handshake_timeout: 1s}}
{}",
        cert.display(),
        key.display(),
        cert.display(),
        key.display(),
        pools(&web, &others)
    ));
    let tls = lb.dir.named_addr("tls");
    let stalled = "lb_client_rejections_total{reason=\"tls_handshake_timeout\"}";
    let before = metric(&lb, stalled).await;
    let cut = AtomicU64::new(0);
    watched(&lb, "stalled TLS handshakes", || async {
        // 100 clients send the start of a ClientHello (a record header announcing 512 bytes and
        // 10 of them) and stall.
        let mut conns = Vec::new();
        for _ in 0..100 {
            let mut conn = TcpStream::connect(tls).await.expect("connect");
            conn.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
                .await
                .expect("write");
            conns.push(conn);
        }
        let started = Instant::now();
        for conn in &mut conns {
            let (closed, _) = read_to_close(conn, Duration::from_secs(10)).await;
            assert!(
                closed,
                "a stalled handshake is still open after {:?}",
                started.elapsed()
            );
            cut.fetch_add(1, Ordering::Relaxed);
        }
    })
    .await;
    counted(&lb, stalled, before + cut.load(Ordering::Relaxed) as f64 - 1.0).await;
    // A TLS client is served meanwhile and after, directly and behind a PROXY header.
    let url = format!("https://example.com:{}/", tls.port());
    let resolve = format!("example.com:{}:127.0.0.1", tls.port());
    let (code, out, err) = curl(&["-sk", "--resolve", &resolve, &url]);
    assert_eq!((code, out.trim()), (0, "web"), "{err}");
    let proxied = lb.dir.named_addr("other");
    let url = format!("https://example.com:{}/", proxied.port());
    let resolve = format!("example.com:{}:127.0.0.1", proxied.port());
    let (code, out, err) = curl(&["-sk", "--haproxy-protocol", "--resolve", &resolve, &url]);
    assert_eq!((code, out.trim()), (0, "web"), "PROXY before TLS: {err}");
    // A bad PROXY header before TLS fails the handshake, counted.
    let failed = "lb_client_rejections_total{reason=\"tls_handshake_failed\"}";
    let before = metric(&lb, failed).await;
    let answer = send(proxied, b"PROXY GARBAGE\r\n\x16\x03\x01", Duration::from_secs(5)).await;
    assert!(answer.bytes.is_empty() && answer.closed, "{}", answer.text());
    counted(&lb, failed, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tens_of_thousands_of_connections_beyond_the_cap_are_refused_and_others_served() {
    more_files();
    let (web, others) = (Demo::start("web"), Demo::start("others"));
    let lb = Lb::start(&format!(
        "listeners:
  - {{address: \"{{listen}}\", max_connections: 10000}}
  - {{address: \"{{other}}\", max_connections: 50}}
admin: {{address: \"{{admin}}\"}}
{}",
        pools(&web, &others)
    ));
    let full = lb.dir.named_addr("other");
    // The capped listener is full with 50 idle clients.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(full).await.expect("connect"));
    }
    let refused = "lb_requests_refused_total{code=\"503\"}";
    let before = metric(&lb, refused).await;
    let flood = AtomicU64::new(0);
    let rounds = watched(&lb, "connections beyond the cap", || async {
        // 20 waves of 1,000 at once, each answered 503 and closed.
        for _ in 0..20 {
            let tries = (0..1000).map(|_| async {
                let mut conn = TcpStream::connect(full).await.ok()?;
                let (closed, seen) = read_to_close(&mut conn, PATIENCE).await;
                Some(closed && seen.starts_with(b"HTTP/1.1 503"))
            });
            let answers = futures::future::join_all(tries).await;
            let refused = answers.iter().filter(|a| **a == Some(true)).count();
            let odd: Vec<_> = answers.iter().filter(|a| **a != Some(true)).take(3).collect();
            assert_eq!(refused, 1000, "{odd:?}");
            flood.fetch_add(1000, Ordering::Relaxed);
        }
    })
    .await;
    let flood = flood.load(Ordering::Relaxed);
    eprintln!("connections beyond the cap: {flood} refused in {rounds} rounds");
    assert!(flood >= 20_000);
    counted(&lb, refused, before + flood as f64 - 1.0).await;
    // The idle clients still hold their slots and are served.
    let mut client = common::Client::connect(full).await.ok();
    drop(idle.pop());
    let served = eventually(PATIENCE, async || {
        if client.is_none() {
            client = common::Client::connect(full).await.ok();
        }
        match client.as_mut() {
            Some(c) => c.get("/").await.is_ok_and(|r| r.status == 200),
            None => false,
        }
    })
    .await;
    assert!(served, "a freed slot is not taken again");
}

/// `lb` on `yaml` with at most `files` open files (soft and hard), its log in the test's dir.
fn start_with_files(dir: &TempDir, yaml: &str, files: u32) -> (Guard, SocketAddr) {
    let listen = common::free_addr();
    let conf = common::write_config(dir, yaml, listen);
    let log = std::fs::File::create(dir.path("lb.log")).expect("log");
    let child = Command::new("prlimit")
        .arg(format!("--nofile={files}:{files}"))
        .arg(common::LB)
        .arg("-c")
        .arg(&conf)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prlimit (util-linux) runs lb");
    let guard = Guard(child);
    let up = (0..1500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        std::fs::read_to_string(dir.path("lb.log")).is_ok_and(|l| l.contains("lb ready"))
    });
    assert!(
        up,
        "lb did not start: {}",
        std::fs::read_to_string(dir.path("lb.log")).unwrap_or_default()
    );
    (guard, listen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_lb_backs_off_logs_once_and_serves_when_they_return() {
    more_files();
    let web = Demo::start("web");
    let dir = TempDir::new("emfile");
    let yaml = format!(
        "listeners: [{{address: \"{{listen}}\"}}]
upstreams:
  web:
    backends: [{}]
",
        web.yaml()
    );
    let (lb, addr) = start_with_files(&dir, &yaml, 256);
    // Open connections until lb cannot accept more; each stays idle.
    let mut conns = Vec::new();
    for _ in 0..400 {
        if let Ok(conn) = TcpStream::connect(addr).await {
            conns.push(conn);
        }
    }
    let log = || std::fs::read_to_string(dir.path("lb.log")).unwrap_or_default();
    let failing = eventually(PATIENCE, async || log().contains("Accept() failed")).await;
    assert!(failing, "lb never ran out of descriptors: {}", log());
    // Out of descriptors for three seconds: lb waits between tries (no busy loop), and says so
    // once.
    let usage = Usage::start(lb.pid());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (cpu, wall, rss) = usage.now();
    let told = log().matches("Accept() failed").count();
    eprintln!(
        "out of descriptors: lb CPU {cpu:?} in {wall:?}, RSS {} MiB, told {told} time(s)",
        rss / 1024
    );
    assert!(
        cpu < Duration::from_millis(500),
        "lb used {cpu:?} of CPU while out of descriptors"
    );
    assert_eq!(told, 1, "{}", log());
    assert!(
        log().contains("too many open files") || log().contains("Too many open files"),
        "{}",
        log()
    );
    // Descriptors come back: lb serves again.
    drop(conns);
    let served = eventually(PATIENCE, async || get(addr, "/").await.is_ok_and(|r| r.status == 200)).await;
    assert!(served, "lb does not serve once descriptors return: {}", log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_drip_get_408_and_a_steady_slow_upload_passes() {
    let (web, others) = (Demo::start("web"), Demo::start("others"));
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\"}}
clients: {{body_timeout: 1s, body_min_rate: 100}}
{}",
        pools(&web, &others)
    ));
    let slow = "lb_client_rejections_total{reason=\"body_too_slow\"}";
    let before = metric(&lb, slow).await;
    let drip = |every: Duration, bytes: usize| {
        let addr = lb.addr;
        async move {
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            let head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n";
            conn.write_all(head).await.expect("head");
            let started = Instant::now();
            for _ in 0..200 {
                if conn.write_all(&vec![b'd'; bytes]).await.is_err() {
                    break;
                }
                tokio::time::sleep(every).await;
                let mut peek = [0u8; 1];
                if tokio::time::timeout(Duration::from_millis(1), conn.peek(&mut peek))
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            let (_, seen) = read_to_close(&mut conn, PATIENCE).await;
            (String::from_utf8_lossy(&seen).to_string(), started.elapsed())
        }
    };
    watched(&lb, "dripping bodies", || async {
        // 50 bytes a second: below 100 B/s, cut once the second of grace and what was sent
        // have run out (about 2 s).
        let (answer, took) = drip(Duration::from_millis(200), 10).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        // A byte every 1.5 s: the per-read body timeout (1 s).
        let (answer, took) = drip(Duration::from_millis(1500), 1).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    })
    .await;
    counted(&lb, slow, before).await;
    // 30 KB at 10 KB/s is slow, but not slower than the minimum rate: it passes.
    let mut conn = TcpStream::connect(lb.addr).await.expect("connect");
    conn.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 30000\r\nConnection: close\r\n\r\n")
        .await
        .expect("head");
    for _ in 0..30 {
        conn.write_all(&[b'u'; 1000]).await.expect("body");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, seen) = read_to_close(&mut conn, PATIENCE).await;
    let answer = String::from_utf8_lossy(&seen);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_chunk_extensions_overflowing_sizes_and_thousands_of_fields_get_their_4xx() {
    let (web, others) = (Demo::start("web"), Demo::start("others"));
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\"}}
{}",
        pools(&web, &others)
    ));
    let bad = "lb_requests_refused_total{code=\"400\"}";
    let fields = "lb_requests_refused_total{code=\"431\"}";
    let (before_bad, before_fields) = (metric(&lb, bad).await, metric(&lb, fields).await);
    // `/upload` answers once it has read the whole body.
    let head = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let extension = format!("{head}5;{}=x\r\nhello\r\n0\r\n\r\n", "e".repeat(5000));
    let overflow = format!("{head}1ffffffffffffffff\r\nhello\r\n0\r\n\r\n");
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "a: b\r\n".repeat(3000));
    watched(&lb, "bad chunks and thousands of fields", || async {
        for (what, request, status) in [
            ("a 5,000-byte chunk extension", extension.as_bytes(), "400"),
            ("a chunk size past 64 bits", overflow.as_bytes(), "400"),
            ("3,000 header fields", many.as_bytes(), "431"),
        ] {
            let answer = send(lb.addr, request, Duration::from_secs(5)).await;
            assert!(
                answer.text().starts_with(&format!("HTTP/1.1 {status}")),
                "{what}: {}",
                answer.text()
            );
        }
        // The same bad chunk arriving after good ones, once the body is on its way to the
        // backend: 400, never a 200.
        let mut conn = TcpStream::connect(lb.addr).await.expect("connect");
        conn.write_all(format!("{head}5\r\nhello\r\n").as_bytes())
            .await
            .expect("first chunk");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = conn
            .write_all(format!("5;{}=x\r\nhello\r\n", "e".repeat(5000)).as_bytes())
            .await;
        let (closed, seen) = read_to_close(&mut conn, PATIENCE).await;
        let answer = String::from_utf8_lossy(&seen);
        assert!(closed, "still open");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    })
    .await;
    counted(&lb, bad, before_bad + 1.0).await;
    counted(&lb, fields, before_fields).await;
    assert_eq!(
        web.stat("requests").await.map(|n| n > 0),
        Some(true),
        "the late bad chunk's request began"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_at_the_send_timeout() {
    let (web, others) = (Demo::start("web"), Demo::start("others"));
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}, {{address: \"{{other}}\"}}]
admin: {{address: \"{{admin}}\"}}
clients: {{send_timeout: 1s}}
{}",
        pools(&web, &others)
    ));
    let timeouts = "lb_client_rejections_total{reason=\"send_timeout\"}";
    let before = metric(&lb, timeouts).await;
    let inflight = format!("lb_backend_inflight{{pool=\"web\",backend=\"{}\"}}", web.addr);
    watched_from(
        &lb,
        lb.dir.named_addr("other"),
        "a client that stops reading",
        || async {
            // 64 MB asked for, nothing read: the socket buffers fill and lb's writes wait.
            let mut conn = TcpStream::connect(lb.addr).await.expect("connect");
            conn.write_all(b"GET /bytes/64000000 HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            tokio::time::sleep(Duration::from_secs(3)).await;
            let (closed, _) = read_to_close(&mut conn, PATIENCE).await;
            assert!(closed, "lb still writes to a client that does not read");
        },
    )
    .await;
    counted(&lb, timeouts, before).await;
    let released = eventually(PATIENCE, async || metric(&lb, &inflight).await == 0.0).await;
    assert!(released, "the backend's slot was kept");
}
