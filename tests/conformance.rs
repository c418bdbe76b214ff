//! HTTP/1.1 as an intermediary (RFC 9110, RFC 9112), over raw sockets on both sides: hostile
//! and malformed requests get their documented status and never reach the backend; what is
//! forwarded is cleaned (hop-by-hop fields, `Connection`-named fields, `Via`, `Max-Forwards`,
//! absolute form, version); responses are checked and cleaned the other way; bytes stream as
//! they arrive whatever the framing; pipelined requests are answered in order. The README's
//! conformance table points at these tests row by row.

mod common;

use common::raw::{send, RawBackend};
use common::{Demo, Lb};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(600);

fn lb_for(backend: std::net::SocketAddr, extra: &str) -> Lb {
    Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
clients: {{max_body_size: 64KiB, max_request_line: 8KiB, max_header_size: 32KiB}}
upstreams:
  web:
    backends: [{{address: \"{backend}\"}}]
    outlier_detection: {{consecutive_failures: 0}}
{extra}"
    ))
}

fn ok_response() -> common::raw::Script {
    Some(vec![(
        Duration::ZERO,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    )])
}

/// Hostile or malformed requests: (what it breaks, the request, the status lb answers).
const HOSTILE: &[(&str, &[u8], u16)] = &[
    (
        "RFC 9112 §3: two spaces in the request line",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §3.2: a space in the target",
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §3.2: a control character in the target",
        b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    (
        "RFC 3986: a byte above 0x7F in the target",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §3.2: a fragment in the target",
        b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    (
        "RFC 9110 §5.6.2: a method that is not a token",
        b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §2.3: a lower-case version",
        b"GET / http/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    ("RFC 9112 §2.3: no version (HTTP/0.9)", b"GET /\r\n\r\n", 400),
    (
        "RFC 9110 §2.5: another major version",
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        505,
    ),
    ("RFC 9112 §2.2: a bare LF", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    (
        "RFC 9112 §5.1: whitespace before the colon",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §5.2: obsolete line folding",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
        400,
    ),
    (
        "RFC 9110 §5.5: NUL in a field value",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        400,
    ),
    (
        "RFC 9110 §5.5: a control character in a field value",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \x07\r\n\r\n",
        400,
    ),
    (
        "RFC 9110 §5.1: a field name that is not a token",
        b"GET / HTTP/1.1\r\nHost: x\r\nX(A: 1\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §3.2: HTTP/1.1 without Host",
        b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §3.2: two Host fields",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §3.2: an invalid Host",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §3.2: absolute form without Host",
        b"GET http://t/ HTTP/1.1\r\n\r\n",
        400,
    ),
    (
        "RFC 9110 §8.6: conflicting Content-Length",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    (
        "RFC 9110 §8.6: duplicated Content-Length",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    (
        "RFC 9110 §8.6: a Content-Length list",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
        400,
    ),
    (
        "RFC 9110 §8.6: a signed Content-Length",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
        400,
    ),
    (
        "RFC 9112 §6.1: Transfer-Encoding with Content-Length",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §6.1: a final coding other than chunked",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §6.1: an unknown transfer coding",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    (
        "RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §7.1: an invalid chunk size",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    (
        "RFC 9112 §7.1: a chunk size that overflows",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        400,
    ),
    (
        "RFC 9112 §7.1: chunk data without its CRLF",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
        400,
    ),
    (
        "RFC 9110 §10.1.1: an unknown expectation",
        b"GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n",
        417,
    ),
    (
        "RFC 9110 §15.5.14: a body over clients.max_body_size",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n",
        413,
    ),
    (
        "RFC 9110 §15.5.14: a chunked body over clients.max_body_size",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n",
        413,
    ),
];

fn big(kind: &str) -> Vec<u8> {
    match kind {
        "line" => format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000)).into_bytes(),
        "field" => format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000)).into_bytes(),
        _ => {
            let fields: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
            format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n").into_bytes()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_their_status_and_never_reach_the_backend() {
    let backend = RawBackend::start(ok_response()).await;
    let lb = lb_for(backend.addr, "");
    let oversized = [
        (
            "RFC 9110 §15.5.15: a request line over clients.max_request_line",
            big("line"),
            414,
        ),
        ("RFC 6585 §5: a head over clients.max_header_size", big("field"), 431),
        ("RFC 6585 §5: more than 100 header fields", big("fields"), 431),
    ];
    let rows = HOSTILE.iter().map(|(what, req, status)| (*what, req.to_vec(), *status));
    for (what, request, status) in rows.chain(oversized) {
        let answer = send(lb.addr, &request, QUIET).await;
        assert_eq!(answer.status(), status, "{what}: {}", answer.text());
        assert!(answer.closed, "{what}: the connection stays open after a refusal");
        assert_eq!(answer.header("connection").as_deref(), Some("close"), "{what}");
    }
    assert!(backend.requests().is_empty(), "forwarded: {:?}", backend.requests());
    // The refusals are logged (access log) and counted; lb still serves.
    let fine = send(
        lb.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(fine.status(), 200, "{}", fine.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_are_cleaned_and_normalized() {
    let backend = RawBackend::start(ok_response()).await;
    let lb = lb_for(backend.addr, "");
    // (rule, request, lines the backend must see, lines it must not see)
    type Case<'a> = (&'a str, &'a [u8], &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            "RFC 9110 §7.6.1: hop-by-hop fields and those Connection names are removed",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Kept: 1\r\n\r\n",
            &["x-kept: 1"],
            &["x-secret", "keep-alive", "te:", "proxy-connection", "upgrade"],
        ),
        (
            "RFC 9110 §7.6.3: Via is added",
            b"GET / HTTP/1.1\r\nHost: x\r\nVia: 1.0 fred\r\n\r\n",
            &["via: 1.0 fred, 1.1 lb"],
            &[],
        ),
        (
            "RFC 9110 §7.6.2: Max-Forwards is decremented",
            b"OPTIONS /x HTTP/1.1\r\nHost: x\r\nMax-Forwards: 5\r\n\r\n",
            &["max-forwards: 4"],
            &[],
        ),
        (
            "RFC 9112 §3.2.2: absolute form: origin form, Host from the target",
            b"GET http://target.example:8080/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n",
            &["GET /p?q=1 HTTP/1.1", "host: target.example:8080"],
            &["host: other"],
        ),
        (
            "RFC 9110 §2.5, §6.2: a higher minor version is HTTP/1.1; lb sends its own version",
            b"GET /v HTTP/1.7\r\nHost: x\r\n\r\n",
            &["GET /v HTTP/1.1"],
            &[],
        ),
        (
            "RFC 9112 §3.2: an HTTP/1.0 request without Host gets one",
            b"GET /old HTTP/1.0\r\n\r\n",
            &["GET /old HTTP/1.1", "host: 127.0.0.1:"],
            &[],
        ),
    ];
    for (i, (what, request, present, absent)) in cases.iter().enumerate() {
        let answer = send(lb.addr, request, QUIET).await;
        assert_eq!(answer.status(), 200, "{what}: {}", answer.text());
        let got = backend.requests();
        let seen = got.get(i).map(|r| r.to_ascii_lowercase()).unwrap_or_default();
        for p in present.iter() {
            assert!(
                seen.contains(&p.to_ascii_lowercase()),
                "{what}: {p:?} missing in\n{seen}"
            );
        }
        for a in absent.iter() {
            assert!(!seen.contains(a), "{what}: {a:?} forwarded in\n{seen}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_forwards_zero_is_answered_by_lb() {
    let backend = RawBackend::start(ok_response()).await;
    let lb = lb_for(backend.addr, "");
    let options = send(
        lb.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(options.status(), 200, "{}", options.text());
    assert!(options.header("allow").is_some_and(|a| a.contains("GET")));
    let trace = send(
        lb.addr,
        b"TRACE / HTTP/1.1\r\nHost: x\r\nMax-Forwards: 0\r\n\r\n",
        QUIET,
    )
    .await;
    assert_eq!(trace.status(), 405);
    assert!(backend.requests().is_empty(), "{:?}", backend.requests());
}

/// Responses from a scripted backend: (what it checks, the backend's bytes, the client's status,
/// texts the client must see, texts it must not).
type ResponseCase = (
    &'static str,
    &'static [u8],
    u16,
    &'static [&'static str],
    &'static [&'static str],
);

const RESPONSES: &[ResponseCase] = &[
    (
        "RFC 9110 §8.6: conflicting Content-Length from the backend",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        502,
        &[],
        &[],
    ),
    (
        "RFC 9110 §8.6: duplicated Content-Length becomes one",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        200,
        &["content-length: 2\r\n"],
        &["content-length: 2\r\ncontent-length"],
    ),
    (
        "RFC 9110 §8.6: Content-Length values of one number written differently become one",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 02\r\nContent-Length: 002\r\n\r\nok",
        200,
        &["content-length: 2\r\n"],
        &["content-length: 2,", "content-length: 0", "content-length: 2\r\ncontent-length"],
    ),
    (
        "RFC 9110 §7.6.1: a 1xx response goes on without Connection and the fields it names",
        b"HTTP/1.1 103 Early Hints\r\nConnection: keep-alive, X-Hint\r\nX-Hint: 1\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        103,
        &["link: </a.css>", "\r\n\r\nok"],
        &["x-hint", "keep-alive"],
    ),
    (
        "RFC 9112 §6.3: Transfer-Encoding wins over Content-Length",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        200,
        &["ok"],
        &["content-length: 100"],
    ),
    (
        "RFC 9110 §7.6.1: response hop-by-hop fields and those Connection names are removed",
        b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: close\r\nUpgrade: h2c\r\nTrailer: X-T\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok",
        200,
        &["x-kept: 1"],
        &["x-secret", "keep-alive:", "proxy-connection", "upgrade:", "trailer:"],
    ),
    (
        "RFC 9112 §5.2: obsolete line folding in a response is replaced by a space",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        200,
        &["ok"],
        &["\r\n b\r\n"],
    ),
    (
        "RFC 9112 §6.3: a close-delimited HTTP/1.0 body arrives whole",
        b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        200,
        &["until the end"],
        &[],
    ),
    (
        "RFC 9110 §5.5: a control character in a response field",
        b"HTTP/1.1 200 OK\r\nX-Bad: a\x01b\r\nContent-Length: 2\r\n\r\nok",
        502,
        &[],
        &[],
    ),
    (
        "RFC 9112 §4: a malformed status line",
        b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
        502,
        &[],
        &[],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_checked_and_cleaned() {
    for (what, response, status, present, absent) in RESPONSES {
        let backend = RawBackend::start(Some(vec![(Duration::ZERO, response.to_vec())])).await;
        let lb = lb_for(backend.addr, "");
        let answer = send(
            lb.addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            QUIET,
        )
        .await;
        let text = answer.text().to_ascii_lowercase();
        assert_eq!(answer.status(), *status, "{what}: {text}");
        for p in present.iter() {
            assert!(
                text.contains(&p.to_ascii_lowercase()),
                "{what}: {p:?} missing in\n{text}"
            );
        }
        for a in absent.iter() {
            assert!(!text.contains(&a.to_ascii_lowercase()), "{what}: {a:?} in\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_chunked_response_is_never_completed_for_the_client() {
    let script = Some(vec![(
        Duration::ZERO,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n".to_vec(),
    )]);
    let backend = RawBackend::start(script).await;
    let lb = lb_for(backend.addr, "");
    let answer = send(lb.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", QUIET).await;
    assert!(answer.closed, "the connection must end");
    assert!(
        !answer.text().ends_with("0\r\n\r\n"),
        "a broken body was completed: {}",
        answer.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_body_streams_as_it_arrives() {
    let demo = Demo::start("a");
    let lb = lb_for(demo.addr, "");
    let answer = send(
        lb.addr,
        b"GET /parts/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    assert!(answer.text().ends_with("part 1  part 2  part 3  "), "{}", answer.text());
    let body_start = answer.text().find("\r\n\r\n").map(|i| i + 4).unwrap_or(usize::MAX);
    // The time of the read that brought the first body byte.
    let mut seen = 0;
    let first_part = answer.reads.iter().find_map(|(at, n)| {
        seen += n;
        (seen > body_start).then_some(*at)
    });
    let first = first_part.expect("no body");
    assert!(
        first < Duration::from_millis(500),
        "first part after {first:?}: {:?}",
        answer.reads
    );
    let last = answer.reads.last().map(|r| r.0).unwrap_or_default();
    assert!(
        last >= Duration::from_millis(1800),
        "the parts came together: {:?}",
        answer.reads
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let demo = Demo::start("a");
    let lb = lb_for(demo.addr, "");
    let request = b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /status/202 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = send(lb.addr, request, QUIET).await;
    assert_eq!(answer.statuses(), [201, 200, 202], "{}", answer.text());
    assert!(answer.text().contains("hello"), "{}", answer.text());
    assert!(answer.closed);
}
