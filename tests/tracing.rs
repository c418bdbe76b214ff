//! W3C trace context and lb's spans through the real binary: `traceparent` and `tracestate`
//! reach the backend unchanged when lb does not record the request; with `tracing:` lb starts a
//! trace for sampled requests that came without one, and an OTLP/HTTP receiver in the test gets
//! one span per sampled request with its route and status; a receiver that hangs delays no
//! request. GETs take lb's own loop and POSTs Pingora's (`LB_PROXY_PATH=pingora`: all Pingora's).

mod common;

use bytes::Bytes;
use common::raw::{read_all, RawBackend};
use common::{eventually, get, metric_value, Lb, PATIENCE};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

/// lb in front of `backend` with route `api` and `extra` appended; returns lb and its metrics
/// address.
fn lb_before(backend: SocketAddr, extra: &str) -> (Lb, SocketAddr) {
    let metrics = common::free_addr();
    let yaml = format!(
        "listeners: [{{address: \"{{listen}}\"}}]
metrics: {{address: \"{metrics}\"}}
upstreams:
  web:
    backends: [{{address: \"{backend}\"}}]
routes:
  - name: api
    match: {{path_prefix: /}}
    upstream: web
{extra}"
    );
    (Lb::start(&yaml), metrics)
}

/// Sends `method /path` with `fields` (each `Name: value`) on its own connection; a POST has a
/// body, so it takes Pingora's loop. Returns the status.
async fn request(lb: SocketAddr, method: &str, path: &str, fields: &[String]) -> u16 {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for f in fields {
        head.push_str(f);
        head.push_str("\r\n");
    }
    head.push_str(if method == "POST" {
        "Content-Length: 4\r\n\r\nbody"
    } else {
        "\r\n"
    });
    let mut conn = tokio::net::TcpStream::connect(lb).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    read_all(&mut conn, Duration::from_secs(10)).await.status()
}

/// Every value of `name` in the request head `head`, in order.
fn fields(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_reaches_the_backend_unchanged() {
    let backend = RawBackend::start(Some(vec![(Duration::ZERO, ANSWER.to_vec())])).await;
    let (lb, _) = lb_before(backend.addr, "");
    // Sampled, unsampled and malformed trace context is not lb's to judge without `tracing:`.
    let cases = [SAMPLED, UNSAMPLED, "00-not-a-valid-traceparent-01"];
    for method in ["GET", "POST"] {
        for parent in cases {
            let sent = [format!("traceparent: {parent}"), format!("tracestate: {TRACESTATE}")];
            assert_eq!(request(lb.addr, method, "/t", &sent).await, 200);
        }
    }
    let heads = backend.requests();
    assert_eq!(heads.len(), 6);
    for (head, parent) in heads.iter().zip(cases.iter().cycle()) {
        assert_eq!(fields(head, "traceparent"), [*parent], "{head}");
        assert_eq!(fields(head, "tracestate"), [TRACESTATE], "{head}");
    }
}

/// An OTLP/HTTP receiver on a free loopback port: decodes each protobuf export and keeps its
/// spans.
async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<Span>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&spans);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let kept = Arc::clone(&kept);
                async move {
                    assert_eq!(req.uri().path(), "/v1/traces");
                    let body = req.into_body().collect().await?.to_bytes();
                    let export = ExportTraceServiceRequest::decode(body).expect("an OTLP export");
                    let all = export.resource_spans.into_iter().flat_map(|r| r.scope_spans);
                    kept.lock().unwrap().extend(all.flat_map(|s| s.spans));
                    Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(conn), service));
        }
    });
    (addr, spans)
}

/// The value of attribute `key` of `span`, as text.
fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(n) => n.to_string(),
        other => format!("{other:?}"),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The span in `spans` that `sent` (the traceparent values the backend got with `head`) names
/// as the parent: in the same trace, with the route, pool, status and backend.
fn assert_span_of(spans: &[Span], head: &str, sent: &[String], backend: SocketAddr) {
    let [sent] = sent else {
        panic!("one traceparent expected: {head}")
    };
    let (trace, span) = (&sent[3..35], &sent[36..52]);
    assert!(sent.ends_with("-01"), "{sent}");
    let mine = spans
        .iter()
        .find(|s| hex(&s.span_id) == span)
        .unwrap_or_else(|| panic!("no span {span}: {spans:?}"));
    assert_eq!(hex(&mine.trace_id), trace);
    assert_eq!(attr(mine, "lb.route").as_deref(), Some("api"));
    assert_eq!(attr(mine, "lb.pool").as_deref(), Some("web"));
    assert_eq!(attr(mine, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(mine, "lb.upstream.address"), Some(backend.to_string()));
    assert!(mine.end_time_unix_nano >= mine.start_time_unix_nano && mine.start_time_unix_nano > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_requests_send_one_span_each_to_the_receiver() {
    let backend = RawBackend::start(Some(vec![(Duration::ZERO, ANSWER.to_vec())])).await;
    let (otlp, spans) = receiver().await;
    let tracing = format!("tracing: {{otlp: {{endpoint: \"http://{otlp}/v1/traces\"}}, sample: 100%}}\n");
    let (lb, metrics) = lb_before(backend.addr, &tracing);

    // Four without a trace (lb starts one), one in a sampled trace (lb's span joins it), one in
    // an unsampled trace (not recorded: it passes unchanged).
    for method in ["GET", "POST", "GET", "POST"] {
        assert_eq!(request(lb.addr, method, "/new", &[]).await, 200);
    }
    assert_eq!(
        request(lb.addr, "GET", "/joined", &[format!("traceparent: {SAMPLED}")]).await,
        200
    );
    assert_eq!(
        request(lb.addr, "POST", "/quiet", &[format!("traceparent: {UNSAMPLED}")]).await,
        200
    );

    let five = eventually(PATIENCE, async || spans.lock().unwrap().len() >= 5).await;
    let exported = "lb_trace_spans_exported_total";
    let counted = eventually(PATIENCE, async || {
        let text = get(metrics, "/metrics").await.map(|r| r.text()).unwrap_or_default();
        metric_value(&text, exported) == Some(5.0)
    })
    .await;
    let spans = spans.lock().unwrap().clone();
    assert!(five && counted, "{} spans: {spans:?}", spans.len());
    assert_eq!(spans.len(), 5, "{spans:?}");

    // Each span is the parent named in the traceparent its backend request carried.
    let heads = backend.requests();
    let parents: Vec<Vec<String>> = heads.iter().map(|h| fields(h, "traceparent")).collect();
    assert_eq!(parents[5], [UNSAMPLED], "an unsampled trace passes unchanged");
    for (head, sent) in heads.iter().zip(&parents).take(5) {
        assert_span_of(&spans, head, sent, backend.addr);
    }
    let joined = spans
        .iter()
        .find(|s| attr(s, "url.path").as_deref() == Some("/joined"))
        .expect("the joined span");
    assert_eq!(hex(&joined.trace_id), &SAMPLED[3..35]);
    assert_eq!(hex(&joined.parent_span_id), &SAMPLED[36..52]);
    let started = spans.iter().filter(|s| attr(s, "url.path").as_deref() == Some("/new"));
    assert!(
        started.clone().count() == 4 && started.clone().all(|s| s.parent_span_id.is_empty()),
        "{spans:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_hangs_delays_no_request() {
    let backend = RawBackend::start(Some(vec![(Duration::ZERO, ANSWER.to_vec())])).await;
    // Accepts connections, reads, never answers.
    let hanging = RawBackend::start(None).await;
    let tracing = format!(
        "tracing: {{otlp: {{endpoint: \"http://{}/v1/traces\", timeout: 3s}}, sample: 100%}}\n",
        hanging.addr
    );
    let (lb, metrics) = lb_before(backend.addr, &tracing);
    // A request that waited for an export would take the 3 s the export hangs.
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let method = if i % 2 == 0 { "GET" } else { "POST" };
        let started = Instant::now();
        assert_eq!(request(lb.addr, method, "/t", &[]).await, 200);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_secs(3), "a request took {slowest:?}");
    let failed = "lb_trace_spans_dropped_total{reason=\"export_failed\"}";
    let dropped = eventually(PATIENCE, async || {
        let text = get(metrics, "/metrics").await.map(|r| r.text()).unwrap_or_default();
        metric_value(&text, failed) == Some(20.0)
    })
    .await;
    let text = get(metrics, "/metrics").await.unwrap().text();
    assert!(dropped, "{text}");
    assert!(
        !hanging.requests().is_empty(),
        "the exporter never reached the receiver"
    );
}
