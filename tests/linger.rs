//! Lingering close: an answer lb gives before it has read the whole request (a 413 for a body
//! too large, a 400 for a bad head with a body behind it) reaches a client that sends its whole
//! body before it reads (as Python's `urllib` does), every time, on the proxy listener and the
//! admin listener; and a client that never stops sending is cut off within the lingering bounds.

mod common;

use common::client::{full, request};
use common::{get, metric_value, Client, Demo, Lb, PATIENCE};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// What a client that writes `head` and then `body` whole before reading gets: the response's
/// first line, or what went wrong (a reset while writing or reading destroys the answer).
fn send_then_read(addr: SocketAddr, head: &[u8], body: &[u8]) -> Result<String, String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_write_timeout(Some(PATIENCE)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(PATIENCE)).map_err(|e| e.to_string())?;
    conn.write_all(head).map_err(|e| format!("writing the head: {e}"))?;
    conn.write_all(body)
        .map_err(|e| format!("writing the body: {:?}", e.kind()))?;
    let mut answer = Vec::new();
    match conn.read_to_end(&mut answer) {
        Ok(_) => {}
        // What arrived before a reset still counts only if the whole head is there.
        Err(e) if answer.windows(4).any(|w| w == b"\r\n\r\n") => {
            return Err(format!("reading: {:?} after {} bytes", e.kind(), answer.len()))
        }
        Err(e) => return Err(format!("reading: {:?}", e.kind())),
    }
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Tries `tries` times; every answer must start with `want`.
fn every_time(addr: SocketAddr, head: &[u8], body: &[u8], tries: usize, want: &str) {
    let mut failures = Vec::new();
    for i in 0..tries {
        match send_then_read(addr, head, body) {
            Ok(line) if line.starts_with(want) => {}
            other => failures.push(format!("try {i}: {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tries} did not get {want} ({} bytes of body):\n{}",
        failures.len(),
        body.len(),
        failures.join("\n")
    );
}

fn post(len: usize) -> Vec<u8> {
    format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").into_bytes()
}

/// `len` bytes as a chunked body of 64 KiB chunks, with its last chunk.
fn chunked(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len + len / 1000 + 16);
    let chunk = vec![b'x'; 64 << 10];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        body.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        body.extend_from_slice(&chunk[..n]);
        body.extend_from_slice(b"\r\n");
        left -= n;
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

fn lb_with(backend: &Demo, clients: &str) -> Lb {
    Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]\nadmin: {{address: \"{{admin}}\"}}\nclients: {{max_body_size: 1MiB{clients}}}\nupstreams: {{web: {{backends: [{{address: \"{}\"}}]}}}}\n",
        backend.addr
    ))
}

async fn metrics(lb: &Lb) -> String {
    get(lb.admin(), "/metrics").await.expect("metrics").text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_reaches_a_client_that_sends_its_whole_body_first() {
    let backend = Demo::start("a");
    let lb = lb_with(&backend, "");
    let (addr, admin) = (lb.addr, lb.admin());
    tokio::task::spawn_blocking(move || {
        for size in [3 * MIB, 20 * MIB] {
            let body = vec![b'x'; size];
            // Refused by its declared length, before a byte of the body is read.
            every_time(addr, &post(size), &body, 20, "HTTP/1.1 413");
            // Chunked: refused once the body passes the limit, mid-way (Pingora's loop).
            let head = b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
            every_time(addr, head, &chunked(size), 20, "HTTP/1.1 413");
        }
        // A bad head with a body behind it.
        let bad = b"POST /upload HTTP/1.1\r\nHost: t\r\nBad Field: x\r\nContent-Length: 3145728\r\n\r\n";
        every_time(addr, bad, &vec![b'x'; 3 * MIB], 5, "HTTP/1.1 400");
        // The admin API's own limit, 8 MiB sent.
        let put = format!(
            "PUT /api/v1/pools/web/backends/127.0.0.1:9 HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            8 * MIB
        );
        every_time(admin, put.as_bytes(), &vec![b' '; 8 * MIB], 20, "HTTP/1.1 413");
    })
    .await
    .expect("the clients");

    // Each of the 105 ended with the client's close (counted as it ends); nothing was cut.
    let closed = |text: &str| metric_value(text, "lb_lingering_closes_total{end=\"closed\"}");
    let all_closed = common::eventually(PATIENCE, async || closed(&metrics(&lb).await) == Some(105.0)).await;
    let text = metrics(&lb).await;
    assert!(
        all_closed,
        "{:?} lingering closes ended by the client:\n{text}",
        closed(&text)
    );
    assert_eq!(metric_value(&text, "lb_lingering_closes_total{end=\"cut\"}"), Some(0.0));
    assert_eq!(metric_value(&text, "lb_lingering_connections"), Some(0.0));
    // A request that fits is proxied as before, on a connection of its own.
    let mut client = Client::connect(lb.addr).await.expect("connect");
    let ok = client
        .send(request("POST", "/upload", full(vec![b'x'; 1000])))
        .await
        .expect("a small upload");
    assert_eq!(ok.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_stops_sending_is_cut_off_within_the_lingering_bounds() {
    let backend = Demo::start("a");
    let lb = lb_with(&backend, ", lingering_time: 2s, lingering_timeout: 1s");
    let addr = lb.addr;
    let (answer, lasted) = tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.set_write_timeout(Some(PATIENCE)).expect("timeout");
        conn.write_all(&post(100 * MIB)).expect("head");
        let started = Instant::now();
        let chunk = vec![b'x'; 64 << 10];
        // 6.4 MB/s, far under lingering_size in lingering_time; bounded in time and bytes.
        let mut sent = 0;
        let ended = loop {
            match conn.write(&chunk) {
                Ok(n) if sent < 100 * MIB => sent += n,
                Ok(_) => break None,
                Err(e) => break Some(e.kind()),
            }
            if started.elapsed() > PATIENCE {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let lasted = started.elapsed();
        assert!(
            matches!(ended, Some(ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)),
            "still sending after {lasted:?} and {sent} bytes: {ended:?}"
        );
        let mut answer = vec![0u8; 4096];
        let n = conn.read(&mut answer).unwrap_or(0);
        (String::from_utf8_lossy(&answer[..n]).into_owned(), lasted)
    })
    .await
    .expect("the client");
    // Cut near lingering_time (2 s), well before the client would have stopped.
    assert!(lasted >= Duration::from_millis(1500), "cut after {lasted:?}");
    assert!(lasted < Duration::from_secs(15), "cut after {lasted:?}");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 413"), "{answer}");
    let text = metrics(&lb).await;
    assert_eq!(
        metric_value(&text, "lb_lingering_closes_total{end=\"cut\"}"),
        Some(1.0),
        "{text}"
    );

    // A client that drips slower than lingering_timeout is cut off by it.
    let lasted = tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(addr).expect("connect");
        conn.write_all(&post(10 * MIB)).expect("head");
        let started = Instant::now();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(1500));
            if conn.write_all(b"x").is_err() {
                break;
            }
        }
        started.elapsed()
    })
    .await
    .expect("the dripping client");
    assert!(lasted < Duration::from_secs(15), "dripped for {lasted:?}");
    let text = metrics(&lb).await;
    assert_eq!(
        metric_value(&text, "lb_lingering_closes_total{end=\"cut\"}"),
        Some(2.0),
        "{text}"
    );
}
