//! Client connections over their life, through the real binary: thousands of idle keep-alive
//! connections cost little memory and leave little behind; a connection parked while idle
//! wakes for its next request, keeps the client the PROXY protocol named, and still closes at
//! its keep-alive timeout.

mod common;

use common::{proc_status_kib, Demo, Lb, PATIENCE};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections in the memory test, and how many are opened at once.
const IDLE: usize = 5000;
const AT_ONCE: usize = 250;

/// Sends a GET for `path` on `conn` and reads the whole response (framed by Content-Length).
async fn exchange(conn: &mut TcpStream, path: &str, extra: &str) -> std::io::Result<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: lb.test\r\n{extra}\r\n");
    conn.write_all(request.as_bytes()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Ok(text);
            }
        }
    }
}

/// Opens `n` connections to `addr`, each with one request answered, `AT_ONCE` at a time;
/// samples `pid`'s resident memory after each group and returns its peak.
async fn open_idle(addr: SocketAddr, n: usize, pid: u32) -> (Vec<TcpStream>, u64) {
    let mut conns = Vec::with_capacity(n);
    let mut peak = 0;
    while conns.len() < n {
        let group: Vec<_> = (0..AT_ONCE.min(n - conns.len()))
            .map(|_| {
                tokio::spawn(async move {
                    let mut conn = TcpStream::connect(addr).await?;
                    let answer = exchange(&mut conn, "/", "").await?;
                    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
                    Ok::<_, std::io::Error>(conn)
                })
            })
            .collect();
        for task in group {
            conns.push(task.await.expect("the client task ended").expect("a connection failed"));
        }
        peak = peak.max(proc_status_kib(pid, "VmRSS"));
    }
    (conns, peak)
}

/// `pid`'s resident memory once it has held still for a second (within `limit`).
async fn settled_rss(pid: u32, limit: Duration) -> u64 {
    let start = Instant::now();
    let mut last = proc_status_kib(pid, "VmRSS");
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = proc_status_kib(pid, "VmRSS");
        if now == last && start.elapsed() > Duration::from_secs(2) || start.elapsed() > limit {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_idle_connections_cost_little_and_leave_little_behind() {
    let demo = Demo::start("a");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]\nupstreams:\n  web:\n    backends: [{}]\n",
        demo.yaml()
    ));
    let pid = lb.proc.pid();
    let mut warm = TcpStream::connect(lb.addr).await.unwrap();
    exchange(&mut warm, "/", "").await.unwrap();
    drop(warm);
    let base = settled_rss(pid, PATIENCE).await;

    let (mut conns, peak) = open_idle(lb.addr, IDLE, pid).await;
    let idle = settled_rss(pid, PATIENCE).await;
    // Before lb parked idle connections, each held ~100 KiB (5,000 took ~500 MiB); nginx takes
    // ~1 KiB each in the same test (see bench/results).
    let cost = idle.saturating_sub(base);
    assert!(
        cost < 32 * 1024,
        "{IDLE} idle connections took {cost} KiB (base {base}, peak {peak})"
    );

    // Parked connections wake for their next request.
    for conn in conns.iter_mut().step_by(IDLE / 100) {
        let answer = exchange(conn, "/", "").await.expect("a parked connection failed");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    drop(conns);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = proc_status_kib(pid, "VmRSS");
    eprintln!("lb RSS KiB: base {base}, peak {peak}, {IDLE} idle {idle}, 10 s after close {after}");
    // Most of what the burst took is back with the system (jemalloc's background purge).
    assert!(
        after <= idle + 2048 && after.saturating_sub(base) < peak.saturating_sub(base) / 2,
        "10 s after the connections closed lb holds {after} KiB (base {base}, idle {idle}, peak {peak})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_wakes_for_its_request_and_closes_at_its_keepalive_timeout() {
    let demo = Demo::start("a");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]\nclients: {{keepalive_timeout: 3s}}\nupstreams:\n  web:\n    backends: [{}]\n",
        demo.yaml()
    ));
    let mut conn = TcpStream::connect(lb.addr).await.unwrap();
    for _ in 0..2 {
        let answer = exchange(&mut conn, "/", "").await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Idle long enough to be parked (after 1 s).
        tokio::time::sleep(Duration::from_millis(1600)).await;
    }
    let answer = exchange(&mut conn, "/", "").await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let quiet = Instant::now();
    let mut byte = [0u8; 1];
    let end = tokio::time::timeout(PATIENCE, conn.read(&mut byte)).await;
    let waited = quiet.elapsed();
    assert!(matches!(end, Ok(Ok(0))), "the idle connection did not close: {end:?}");
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(6),
        "closed after {waited:?}, the keep-alive timeout is 3 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_protocol_client_stays_the_client_across_parking() {
    let demo = Demo::start("a");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\", proxy_protocol: true}}]
trusted_proxies: [127.0.0.0/8]
upstreams:
  web:
    backends: [{}]
",
        demo.yaml()
    ));
    // Version 1 (text).
    let mut v1 = TcpStream::connect(lb.addr).await.unwrap();
    v1.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 80\r\n")
        .await
        .unwrap();
    // Version 2 (binary): PROXY, TCP over IPv4, 198.51.100.9:40001 -> 127.0.0.1:80.
    let mut v2 = TcpStream::connect(lb.addr).await.unwrap();
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1, 0x9c, 0x41, 0, 80]);
    v2.write_all(&header).await.unwrap();
    for (conn, client) in [(&mut v1, "192.0.2.7"), (&mut v2, "198.51.100.9")] {
        for round in 0..2 {
            let answer = exchange(conn, "/headers", "").await.unwrap();
            let forwarded = answer
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("x-forwarded-for:"))
                .unwrap_or_default()
                .to_string();
            assert!(forwarded.ends_with(client), "round {round}: {forwarded:?} in\n{answer}");
            if round == 0 {
                tokio::time::sleep(Duration::from_millis(1600)).await;
            }
        }
    }
}
