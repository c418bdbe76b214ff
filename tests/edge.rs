//! The edge through the real binary: WebSockets outlive the HTTP read timeout; rate limits per
//! client; a stalled backend gives 504 and a slow client is cut off, neither disturbing others;
//! passive health ejects a failing backend between active checks; redirect mode and the HTTPS
//! redirect answer without touching a backend; the connection cap per listener.

mod common;

use common::raw::{send, RawBackend};
use common::{eventually, get, Client, Demo, Lb, PATIENCE};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

fn pool_of(demos: &[&Demo]) -> String {
    let list: Vec<String> = demos.iter().map(|d| d.yaml()).collect();
    list.join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_stays_open_past_three_read_timeouts_and_is_counted() {
    let demo = Demo::start("a");
    let metrics = common::free_addr();
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
access_log: {{path: \"{{dir}}/access.log\"}}
metrics: {{address: \"{metrics}\"}}
clients: {{body_timeout: 1s}}
upstreams:
  web:
    backends: [{}]
    timeouts: {{read: 1s, write: 1s, tunnel: 1h}}
",
        demo.yaml()
    ));
    let (mut conn, head) = common::ws::connect_echoing(lb.addr, "/ws").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // Quiet for more than three read timeouts (1 s each, client and backend side).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    common::ws::send(&mut conn, "still there").await;
    let echo = tokio::time::timeout(PATIENCE, common::ws::receive(&mut conn)).await;
    assert_eq!(echo.expect("no echo").unwrap(), (1, "still there".to_string()));
    drop(conn);
    let counted = eventually(PATIENCE, async || {
        let text = get(metrics, "/metrics").await.map(|r| r.text()).unwrap_or_default();
        let log = std::fs::read_to_string(lb.dir.path("access.log")).unwrap_or_default();
        let upgrades = common::metric_value(&text, "lb_upgrades_total{pool=\"web\"}").unwrap_or(0.0);
        upgrades >= 1.0 && log.contains("\"GET /ws HTTP/1.1\" 101")
    })
    .await;
    assert!(counted, "not in the metrics or the access log");
}

/// Sends `n` requests to `path` from `local`, one connection each (so each is a new client
/// connection from that address), and counts the statuses; the 429s must carry Retry-After.
async fn burst(lb: SocketAddr, local: IpAddr, path: &str, n: usize) -> (usize, usize) {
    let (mut ok, mut limited) = (0, 0);
    let mut client = Client::connect_from(Some(local), lb).await.unwrap();
    for _ in 0..n {
        let resp = client.get(path).await.unwrap();
        match resp.status {
            200 => ok += 1,
            429 => {
                assert!(
                    resp.header("retry-after").parse::<u64>().is_ok_and(|s| s >= 1),
                    "{:?}",
                    resp.headers
                );
                limited += 1;
            }
            other => panic!("status {other}: {}", resp.text()),
        }
    }
    (ok, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_a_burst_per_client_and_leaves_others_alone() {
    let demo = Demo::start("a");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
upstreams:
  web:
    backends: [{}]
routes:
  - {{path_prefix: /api/, upstream: web, rate_limit: {{requests_per_second: 50, burst: 50, key: source_ip}}}}
  - {{upstream: web}}
",
        demo.yaml()
    ));
    let started = Instant::now();
    let (ok, limited) = burst(lb.addr, "127.0.0.2".parse().unwrap(), "/api/x", 200).await;
    // 50 at once, plus at most 50 per second for as long as the burst took.
    let refill = (started.elapsed().as_secs_f64() * 50.0).ceil() as usize;
    assert!(
        ok >= 50 && ok <= 50 + refill + 1,
        "{ok} passed, {limited} limited in {:?}",
        started.elapsed()
    );
    assert_eq!(ok + limited, 200);
    assert!(limited >= 100, "{limited}");
    // Another client and another route are not affected.
    assert_eq!(
        burst(lb.addr, "127.0.0.3".parse().unwrap(), "/api/x", 40).await,
        (40, 0)
    );
    assert_eq!(
        burst(lb.addr, "127.0.0.2".parse().unwrap(), "/other", 60).await,
        (60, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_backend_gives_504_and_a_slow_client_is_cut_off_without_disturbing_others() {
    let silent = RawBackend::start(None).await;
    let demo = Demo::start("a");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
clients: {{header_timeout: 2s}}
upstreams:
  stuck:
    backends: [{{address: \"{}\"}}]
    timeouts: {{read: 1s}}
    retries: 0
  web:
    backends: [{}]
routes:
  - {{path_prefix: /stuck/, upstream: stuck}}
  - {{upstream: web}}
",
        silent.addr,
        demo.yaml()
    ));
    let addr = lb.addr;
    // A slow client: its head one byte every 300 ms, never done within the 2 s header timeout.
    let slow = tokio::spawn(async move {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        for b in b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: 1234567890\r\n\r\n" {
            if conn.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let answer = common::raw::read_all(&mut conn, Duration::from_secs(5)).await;
        (started.elapsed(), answer.status(), answer.closed)
    });
    let stuck = tokio::spawn(async move {
        let started = Instant::now();
        let resp = get(addr, "/stuck/x").await.unwrap();
        (started.elapsed(), resp.status)
    });
    // Everyone else is served as usual meanwhile.
    let mut client = Client::connect(lb.addr).await.unwrap();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(client.get("/").await.unwrap().status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a normal request waited {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (took, status) = stuck.await.unwrap();
    assert_eq!(status, 504);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "504 after {took:?}"
    );
    let (took, status, closed) = slow.await.unwrap();
    assert!(closed, "the slow client was not cut off");
    assert_eq!(status, 408);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "cut off after {took:?}"
    );
    assert_eq!(silent.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_ejects_a_failing_backend_before_the_next_active_check() {
    let (good, bad) = (Demo::start("good"), Demo::start_with("bad", &["--fail-rate", "1"]));
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
upstreams:
  web:
    backends: [{}]
    health_check: {{path: /healthz, interval: 1h}}
    outlier_detection: {{consecutive_failures: 3}}
",
        pool_of(&[&good, &bad])
    ));
    // Round robin: the bad backend answers 500 to every other request until it is ejected,
    // long before its next health check (in an hour, and it would pass anyway: /healthz is fine).
    let mut client = Client::connect(lb.addr).await.unwrap();
    let mut failures = 0;
    for _ in 0..40 {
        let resp = client.get("/").await.unwrap();
        if resp.status == 500 {
            failures += 1;
        } else {
            assert_eq!(resp.backend(), "good");
        }
    }
    assert_eq!(failures, 3, "ejected after 3 failures in a row");
    assert!(
        lb.log().contains("backend")
            && lb
                .log()
                .contains("becomes unhealthy, 3 failed attempts in a row (passive health)"),
        "{}",
        lb.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_mode_and_https_redirect_answer_without_a_backend() {
    let backend = RawBackend::start(Some(vec![(
        Duration::ZERO,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    )]))
    .await;
    let certs = common::TempDir::new("redirect-certs");
    let (cert, key) = common::certs::make(&certs, "site", &["site.test"]);
    let lb = Lb::start(&format!(
        "listeners:
  - address: \"{{listen}}\"
  - {{address: \"{{tls}}\", tls: {{certificates: [{{cert: \"{}\", key: \"{}\"}}]}}}}
upstreams:
  web:
    backends: [{{address: \"{}\"}}]
routes:
  - {{path_prefix: /go/, upstream: web, redirect: 307}}
  - {{path_prefix: /secure/, upstream: web, https_redirect: 308}}
",
        cert.display(),
        key.display(),
        backend.addr
    ));
    let answer = send(
        lb.addr,
        b"GET /go/a?b=1 HTTP/1.1\r\nHost: site.test\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(answer.status(), 307, "{}", answer.text());
    assert_eq!(
        answer.header("location"),
        Some(format!("http://{}/go/a?b=1", backend.addr))
    );
    let tls_port = lb.dir.named_addr("tls").port();
    let answer = send(
        lb.addr,
        b"POST /secure/p HTTP/1.1\r\nHost: site.test:80\r\nContent-Length: 0\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(answer.status(), 308, "{}", answer.text());
    assert_eq!(
        answer.header("location"),
        Some(format!("https://site.test:{tls_port}/secure/p"))
    );
    assert!(
        backend.requests().is_empty(),
        "a redirect reached the backend: {:?}",
        backend.requests()
    );
    // Over TLS the same route proxies.
    let url = format!("https://site.test:{tls_port}/secure/p");
    let resolve = format!("site.test:{tls_port}:127.0.0.1");
    let (_, body, _) = common::certs::curl(&["-sk", "--resolve", &resolve, &url]);
    assert_eq!(body, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_refuses_with_503_and_recovers() {
    let demo = Demo::start("a");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\", max_connections: 3}}]\nupstreams: {{web: {{backends: [{}]}}}}\n",
        demo.yaml()
    ));
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(lb.addr).await.unwrap();
        assert_eq!(c.get("/").await.unwrap().status, 200);
        held.push(c);
    }
    let answer = send(
        lb.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(answer.status(), 503, "{}", answer.text());
    held.pop();
    let recovered = eventually(PATIENCE, async || {
        get(lb.addr, "/").await.is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(recovered);
}
