//! Acceptance 5 of the core issue and the proxying promises: bodies of every method come back
//! byte-identical, chunked ones too; query strings and repeated headers survive; forwarding
//! headers are set; 100 MiB streams through without sitting in memory; backend connections are
//! pooled.

mod common;

use bytes::Bytes;
use common::client::{empty, full, request, streamed};
use common::{get, Client, Demo, Lb};

/// One pool of `demo`, without a body size limit (the 1 MiB default is tested elsewhere).
fn one_pool(demo: &Demo) -> String {
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]\nclients: {{max_body_size: 0}}\nupstreams:\n  web:\n    backends: [{}]\n",
        demo.yaml()
    )
}

fn body_of(len: usize) -> Bytes {
    // Every byte value, in an order that makes shifted or truncated copies differ.
    Bytes::from((0..len).map(|i| (i * 7 + i / 251) as u8).collect::<Vec<u8>>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_every_method_echo_byte_identical() {
    let demo = Demo::start("a");
    let lb = Lb::start(&one_pool(&demo));
    let mut client = Client::connect(lb.addr).await.unwrap();
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        for len in [0, 1, 65_537, 10 * 1024 * 1024] {
            let body = body_of(len);
            let resp = client
                .send(request(method, "/echo?m=1", full(body.clone())))
                .await
                .unwrap();
            assert_eq!(resp.status, 200, "{method} {len}");
            assert_eq!(resp.header("x-echo-method"), method);
            assert_eq!(resp.body.len(), len, "{method} {len}");
            assert!(resp.body == body, "{method} {len} bytes differ");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_bodies_pass_through() {
    let demo = Demo::start("a");
    let lb = Lb::start(&one_pool(&demo));
    let mut client = Client::connect(lb.addr).await.unwrap();
    let mut req = request("POST", "/headers", streamed(300_000, 7_000, false));
    req.headers_mut().insert("x-probe", "1".parse().unwrap());
    let resp = client.send(req).await.unwrap();
    assert!(resp.text().contains("transfer-encoding: chunked"), "{}", resp.text());
    assert!(resp.text().ends_with("body: 300000 bytes\n"), "{}", resp.text());

    let resp = client
        .send(request("PUT", "/upload", streamed(300_000, 7_000, false)))
        .await
        .unwrap();
    assert_eq!(resp.text(), "received 300000 bytes\n");

    // Byte for byte: the echo of a chunked body is the 7000-byte frame pattern, repeated.
    let resp = client
        .send(request("POST", "/echo", streamed(300_000, 7_000, false)))
        .await
        .unwrap();
    let frame: Vec<u8> = (0..7_000).map(|i| (i % 251) as u8).collect();
    let expected: Vec<u8> = frame.iter().copied().cycle().take(300_000).collect();
    assert_eq!(resp.status, 200);
    assert!(resp.body == expected, "the echoed chunked body differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_strings_repeated_headers_and_forwarding_headers_survive() {
    let demo = Demo::start("a");
    let lb = Lb::start(&one_pool(&demo));
    let mut client = Client::connect(lb.addr).await.unwrap();
    let mut req = request("GET", "/headers?a=1&b=%20x&a=2", empty());
    let h = req.headers_mut();
    h.insert("host", "shop.example:8080".parse().unwrap());
    h.append("x-multi", "one".parse().unwrap());
    h.append("x-multi", "two".parse().unwrap());
    h.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
    let text = client.send(req).await.unwrap().text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "GET /headers?a=1&b=%20x&a=2", "{text}");
    assert!(lines.contains(&"host: shop.example:8080"), "{text}");
    let multi: Vec<&&str> = lines.iter().filter(|l| l.starts_with("x-multi:")).collect();
    assert_eq!(multi, [&"x-multi: one", &"x-multi: two"], "{text}");
    assert!(lines.contains(&"x-forwarded-for: 203.0.113.7, 127.0.0.1"), "{text}");
    assert!(lines.contains(&"x-forwarded-proto: http"), "{text}");
    assert!(lines.contains(&"x-forwarded-host: shop.example:8080"), "{text}");

    // Without an earlier hop, the header is just the client, from whichever address it used.
    let mut from7 = Client::connect_from(Some("127.0.0.7".parse().unwrap()), lb.addr)
        .await
        .unwrap();
    let text = from7.get("/headers").await.unwrap().text();
    assert!(text.lines().any(|l| l == "x-forwarded-for: 127.0.0.7"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_and_response_headers_pass_through() {
    let demo = Demo::start("a");
    let lb = Lb::start(&one_pool(&demo));
    for code in [201, 204, 301, 404, 418, 500, 503] {
        let resp = get(lb.addr, &format!("/status/{code}")).await.unwrap();
        assert_eq!(resp.status, code);
        assert_eq!(resp.backend(), "a");
    }
}

const HUNDRED_MIB: u64 = 100 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_mib_streams_both_ways_without_filling_memory() {
    let demo = Demo::start("a");
    let lb = Lb::start(&one_pool(&demo));
    let baseline = lb.peak_rss_kib();
    let mut client = Client::connect(lb.addr).await.unwrap();

    let down = client.get(&format!("/bytes/{HUNDRED_MIB}")).await.unwrap();
    assert_eq!(down.body.len() as u64, HUNDRED_MIB);
    let up = client
        .send(request("POST", "/upload", streamed(HUNDRED_MIB, 64 * 1024, true)))
        .await
        .unwrap();
    assert_eq!(up.text(), format!("received {HUNDRED_MIB} bytes\n"));

    let peak = lb.peak_rss_kib();
    assert!(baseline > 0 && peak > 0, "no /proc figures");
    // Buffering either body whole would add at least 100 MiB.
    assert!(
        peak - baseline < 48 * 1024,
        "peak RSS grew from {baseline} KiB to {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_are_pooled_and_reused() {
    let demo = Demo::start("a");
    let lb = Lb::start(&one_pool(&demo));
    for _ in 0..50 {
        // A new client connection each time: reuse must come from lb's pool, not the client.
        assert_eq!(get(lb.addr, "/").await.unwrap().status, 200);
    }
    let connections = demo.stat("connections").await.unwrap_or(u64::MAX);
    // One direct stats connection, plus few from lb (one per worker thread, and once in a
    // while one more when a request arrives before the previous connection is back in the pool).
    assert!(connections <= 4, "50 requests opened {connections} backend connections");
}

/// Sends `request` as is on a new connection and reads until lb closes it.
async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(common::PATIENCE, conn.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "lb kept the connection open after: {answer:?}");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_request_needs_exactly_one_host() {
    let demo = Demo::start("a");
    let lb = Lb::start(&one_pool(&demo));
    for (request, status) in [
        ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", "400"),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            "400",
        ),
        ("GET / HTTP/1.0\r\n\r\n", "200"),
        ("GET http://t/ HTTP/1.1\r\nConnection: close\r\n\r\n", "400"),
        ("GET http://t/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "200"),
        ("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "200"),
    ] {
        let answer = raw_exchange(lb.addr, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?} got {answer:?}"
        );
    }
    // The 400 names the problem, and the connection is closed after it (as nginx does).
    let answer = raw_exchange(lb.addr, "GET / HTTP/1.1\r\n\r\n").await;
    assert!(
        answer.contains("Host") && answer.contains("onnection: close"),
        "{answer:?}"
    );
}
