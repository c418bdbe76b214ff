//! The tracer's decisions: which requests lb records, what the backend is sent, and a full
//! queue.

use super::*;

const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

fn with(traceparent: Option<&'static str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(TRACESTATE, HeaderValue::from_static("vendor=abc"));
    if let Some(value) = traceparent {
        headers.insert(TRACEPARENT, HeaderValue::from_static(value));
    }
    headers
}

#[test]
fn a_sampled_caller_is_followed_whatever_the_share() {
    let (tx, _rx) = mpsc::channel(1);
    let none = tracer(0.0, tx);
    let trace = none.begin(&with(Some(SAMPLED))).expect("a trace");
    assert_eq!(trace.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
    assert_eq!(trace.parent, Some(0x00f067aa0ba902b7));
    let span = trace.span.expect("recorded");
    assert_ne!(span.id, 0x00f067aa0ba902b7);

    // lb's span becomes the backend's parent; the caller's tracestate goes on.
    let mut headers = with(Some(SAMPLED));
    edit_request(Some(&trace), &mut headers);
    let sent = context::incoming(&headers).expect("valid");
    assert_eq!(
        (sent.trace_id, sent.span_id, sent.sampled),
        (trace.trace_id, span.id, true)
    );
    assert_eq!(headers[TRACESTATE], "vendor=abc");
}

#[test]
fn an_unsampled_caller_is_not_recorded_and_passes_unchanged() {
    let (tx, _rx) = mpsc::channel(1);
    let all = tracer(1.0, tx);
    let trace = all.begin(&with(Some(UNSAMPLED))).expect("a trace");
    assert_eq!(trace.span, None);
    let mut headers = with(Some(UNSAMPLED));
    edit_request(Some(&trace), &mut headers);
    assert_eq!(headers, with(Some(UNSAMPLED)));
}

#[test]
fn without_a_caller_the_share_decides_and_lb_starts_the_trace() {
    let (tx, _rx) = mpsc::channel(1);
    let all = tracer(1.0, tx.clone());
    let trace = all.begin(&with(None)).expect("sampled");
    assert_eq!(trace.parent, None);
    let span = trace.span.expect("recorded");
    let mut headers = with(None);
    edit_request(Some(&trace), &mut headers);
    let sent = context::incoming(&headers).expect("valid");
    assert_eq!((sent.trace_id, sent.span_id), (trace.trace_id, span.id));
    // A tracestate without a valid traceparent belongs to nothing lb continues.
    assert!(!headers.contains_key(TRACESTATE));
    // An invalid traceparent is as good as none: replaced.
    let mut headers = with(Some("00-zz"));
    edit_request(Some(&trace), &mut headers);
    assert!(context::incoming(&headers).is_some());

    assert_eq!(tracer(0.0, tx.clone()).begin(&with(None)), None);
    let quarter = tracer(0.25, tx);
    let sampled = (0..4000).filter(|_| quarter.begin(&HeaderMap::new()).is_some()).count();
    assert!((800..1200).contains(&sampled), "{sampled} of 4000 at 25%");
}

#[test]
fn a_full_queue_drops_and_counts() {
    let (tx, mut rx) = mpsc::channel(1);
    let all = tracer(1.0, tx);
    let finished = || Finished {
        trace_id: 1,
        parent: None,
        span: all.span(),
        end: SystemTime::now(),
        method: Method::GET,
        path: "/".into(),
        route: None,
        pool: None,
        client: None,
        upstream: None,
        tries: 0,
        upstream_sent: None,
        upstream_time: None,
        status: 200,
        request_id: None,
        error: None,
    };
    let before = counts().1;
    all.finish(finished());
    all.finish(finished());
    assert!(rx.try_recv().is_ok());
    assert!(counts().1 > before, "the second span was not counted as dropped");
}
