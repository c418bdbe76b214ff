//! The JSON access log (`access_log: {format: json}`), request ids and `lb_route_requests_total`
//! through the real binary: every line parses as one JSON object with every field; the id a
//! backend saw is the one the client got back and the one logged (generated, or kept from a
//! trusted proxy); routes count their responses under their name or `routes[N]`. Bodiless
//! requests take lb's own loop and the POST Pingora's; `LB_PROXY_PATH=pingora` sends all to
//! Pingora's.

mod common;

use common::raw::RawBackend;
use common::{eventually, get, Lb, PATIENCE};
use std::net::SocketAddr;
use std::time::Duration;

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// lb logging JSON in front of `backend`, with a named and an unnamed route; returns lb and
/// its metrics address.
fn lb_with_json_log(backend: SocketAddr) -> (Lb, SocketAddr) {
    let metrics = common::free_addr();
    let yaml = format!(
        "listeners: [{{address: \"{{listen}}\"}}]
access_log: {{path: \"{{dir}}/access.log\", format: json}}
metrics: {{address: \"{metrics}\"}}
trusted_proxies: [127.0.0.2/32]
upstreams:
  web:
    backends: [{{address: \"{backend}\"}}]
routes:
  - name: api
    match: {{path_prefix: /api/}}
    upstream: web
  - {{path_prefix: /other/, upstream: web}}
"
    );
    (Lb::start(&yaml), metrics)
}

/// The value of `name` in an HTTP head, case-insensitively.
fn field(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// Sends `head` (and `body`) from `from` to lb, one request on its own connection; returns
/// the status and the `X-Request-Id` of the answer.
async fn exchange(lb: SocketAddr, from: &str, head: impl AsRef<[u8]>, body: &str) -> (u16, Option<String>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut conn = socket.connect(lb).await.unwrap();
    let mut bytes = head.as_ref().to_vec();
    bytes.extend_from_slice(format!("Host: t\r\nConnection: close\r\n\r\n{body}").as_bytes());
    tokio::io::AsyncWriteExt::write_all(&mut conn, &bytes).await.unwrap();
    let answer = common::raw::read_all(&mut conn, Duration::from_secs(10)).await;
    (answer.status(), answer.header("x-request-id"))
}

/// Every line of the log once `n` are there, each parsed (a line that is not one JSON object
/// fails the test).
async fn log_lines(lb: &Lb, n: usize) -> Vec<serde_json::Value> {
    let path = lb.dir.path("access.log");
    let complete = async || std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= n);
    let written = eventually(PATIENCE, complete).await;
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(written, "{n} lines expected:\n{text}");
    assert!(text.ends_with('\n'), "{text}");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(v.is_object(), "{line}");
            v
        })
        .collect()
}

/// The line of the first request: every field as sent, generated or chosen.
fn assert_first_line(first: &serde_json::Value, generated: &str, upstream: SocketAddr) {
    let upstream = upstream.to_string();
    for (key, want) in [
        ("client", "127.0.0.1"),
        ("method", "GET"),
        ("path", "/api/a?q=%22x"),
        ("protocol", "HTTP/1.1"),
        ("user_agent", "\"ua\\\tz"),
        ("request_id", generated),
        ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("route", "api"),
        ("pool", "web"),
        ("upstream", &upstream),
    ] {
        assert_eq!(first[key], want, "{key} in {first}");
    }
    assert_eq!(
        (
            first["status"].as_u64(),
            first["bytes"].as_u64(),
            first["tries"].as_u64()
        ),
        (Some(200), Some(2), Some(1))
    );
    assert!(
        first["rt"].as_f64().is_some() && first["urt"].as_f64().is_some(),
        "{first}"
    );
    assert!(
        first["time"]
            .as_str()
            .is_some_and(|t| t.len() == 24 && t.ends_with('Z')),
        "{first}"
    );
    assert_eq!(first["referer"], serde_json::Value::Null);
}

/// `lb_route_requests_total` after the first test's requests.
async fn assert_route_counts(metrics: SocketAddr) {
    let text = get(metrics, "/metrics").await.unwrap().text();
    for sample in [
        "lb_route_requests_total{route=\"api\",code=\"2xx\"} 2",
        "lb_route_requests_total{route=\"routes[1]\",code=\"2xx\"} 1",
        "lb_route_requests_total{route=\"api\",code=\"4xx\"} 0",
        "# TYPE lb_route_requests_total counter",
    ] {
        assert!(text.contains(sample), "missing {sample:?} in\n{text}");
    }
    // Ten label sets: two routes by five classes; the unrouted 404 is no route's.
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("lb_route_requests_total{"))
            .count(),
        10,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_id_the_backend_and_client_saw() {
    let backend = RawBackend::start(Some(vec![(Duration::ZERO, ANSWER.to_vec())])).await;
    let (lb, metrics) = lb_with_json_log(backend.addr);

    // 1: no id, a trace and a User-Agent that needs escaping (lb's loop, unless told otherwise).
    let head = format!("GET /api/a?q=%22x HTTP/1.1\r\nUser-Agent: \"ua\\\tz\r\ntraceparent: {TRACEPARENT}\r\n");
    let (status, generated) = exchange(lb.addr, "127.0.0.1", &head, "").await;
    assert_eq!(status, 200);
    let generated = generated.expect("a generated X-Request-Id");
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    // 2: an id from a client that is not a trusted proxy is replaced.
    let (_, replaced) = exchange(
        lb.addr,
        "127.0.0.1",
        "GET /other/b HTTP/1.1\r\nX-Request-Id: forged\r\n",
        "",
    )
    .await;
    let replaced = replaced.expect("an X-Request-Id");
    assert_ne!(replaced, "forged");
    // 3: one from a trusted proxy is kept, on Pingora's loop (a body).
    let post = "POST /api/c HTTP/1.1\r\nX-Request-Id: kept-1\r\nContent-Length: 4\r\n";
    assert_eq!(
        exchange(lb.addr, "127.0.0.2", post, "body").await,
        (200, Some("kept-1".into()))
    );
    // 4: routed nowhere.
    assert_eq!(
        exchange(lb.addr, "127.0.0.1", "GET /nowhere HTTP/1.1\r\n", "").await.0,
        404
    );

    let seen: Vec<Option<String>> = backend.requests().iter().map(|h| field(h, "x-request-id")).collect();
    assert_eq!(
        seen,
        [Some(generated.clone()), Some(replaced.clone()), Some("kept-1".into())]
    );

    let lines = log_lines(&lb, 4).await;
    assert_eq!(lines.len(), 4);
    assert_first_line(&lines[0], &generated, backend.addr);

    assert_eq!(
        (lines[1]["route"].as_str(), lines[1]["request_id"].as_str()),
        (Some("routes[1]"), Some(replaced.as_str()))
    );
    assert_eq!(lines[1]["trace_id"], serde_json::Value::Null);
    assert_eq!(
        (lines[2]["method"].as_str(), lines[2]["request_id"].as_str()),
        (Some("POST"), Some("kept-1"))
    );
    assert_eq!(lines[2]["client"], "127.0.0.2");
    let unrouted = &lines[3];
    assert_eq!(
        (unrouted["status"].as_u64(), unrouted["tries"].as_u64()),
        (Some(404), Some(0))
    );
    for key in ["route", "pool", "upstream", "urt"] {
        assert_eq!(unrouted[key], serde_json::Value::Null, "{key} in {unrouted}");
    }
    assert!(
        unrouted["request_id"].as_str().is_some_and(|id| id.len() == 36),
        "{unrouted}"
    );

    assert_route_counts(metrics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_leave_every_line_one_json_object() {
    let backend = RawBackend::start(Some(vec![(Duration::ZERO, ANSWER.to_vec())])).await;
    let (lb, _) = lb_with_json_log(backend.addr);
    // What an HTTP/1 head can carry in a value: quotes, backslashes, braces, tabs, bytes above
    // 0x7f that are not UTF-8, and UTF-8 that is; the id is kept from a trusted proxy as it came.
    let agents: [&[u8]; 4] = [
        b"\"}{\"status\":1,\"x\":\"",
        b"a\\\"\\\\\tb",
        b"\xff\xfe\xc3\x28",
        "caf\u{e9} \u{1f600}".as_bytes(),
    ];
    for agent in agents {
        let mut head = b"GET /api/x HTTP/1.1\r\nX-Request-Id: \"}\\\r\nUser-Agent: ".to_vec();
        head.extend_from_slice(agent);
        head.extend_from_slice(b"\r\n");
        let (status, id) = exchange(lb.addr, "127.0.0.2", head, "").await;
        assert_eq!((status, id.as_deref()), (200, Some("\"}\\")));
    }
    let lines = log_lines(&lb, agents.len()).await;
    assert_eq!(lines.len(), agents.len());
    assert_eq!(lines[0]["user_agent"], "\"}{\"status\":1,\"x\":\"");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[1]["user_agent"], "a\\\"\\\\\tb");
    assert!(lines.iter().all(|l| l["request_id"] == "\"}\\"), "{lines:?}");
    assert_eq!(lines[2]["user_agent"], "\u{ff}\u{fe}\u{c3}(");
    assert_eq!(lines[3]["user_agent"], "caf\u{e9} \u{1f600}");
}
