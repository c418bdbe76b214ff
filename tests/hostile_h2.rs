//! Hostile HTTP/2 clients through the real binary, over h2c with a raw frame writer: rapid
//! reset, CONTINUATION without end, SETTINGS/PING/WINDOW_UPDATE floods, HPACK table abuse,
//! streams past `max_concurrent_streams`, a stream whose window never opens, a head with
//! thousands of fields. Each gets its bounded answer or close and is counted, while a bystander
//! on the same listener is served (its p99, lb's CPU and memory reported).

mod common;

use common::h2raw::*;
use common::watch::{counted, metric, watched};
use common::{eventually, Demo, Lb, PATIENCE};
use std::time::Duration;

/// A frame that does not come within this is not coming.
const QUIET: Duration = Duration::from_secs(10);

/// lb with `clients`, pool `web` on `demo` for the attacks and pool `others` (a backend of its
/// own, so `demo` counts only the attacker's requests) for the bystander's `/others/`.
fn start(demo: &Demo, clients: &str) -> (Lb, Demo) {
    let others = Demo::start("others");
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\", h2c: true}}]
admin: {{address: \"{{admin}}\"}}
clients: {clients}
upstreams:
  web:
    backends: [{}]
  others:
    backends: [{}]
routes:
  - {{path_prefix: /others/, upstream: others}}
  - {{path_prefix: /, upstream: web}}
",
        demo.yaml(),
        others.yaml()
    ));
    (lb, others)
}

/// A connection whose SETTINGS exchange is done (the server's limits apply).
async fn settled(lb: &Lb, settings: &[(u16, u32)]) -> H2 {
    let mut h2 = H2::connect(lb.addr, settings).await.expect("connect");
    let frames = h2.read_until(QUIET, |f| f.kind == SETTINGS && f.flags & ACK != 0).await;
    assert!(
        frames.iter().any(|f| f.kind == SETTINGS && f.flags & ACK != 0),
        "no SETTINGS ACK: {frames:?}"
    );
    h2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_cut_off_and_reaches_the_backend_little() {
    let demo = Demo::start("a");
    let (lb, _others) = start(&demo, "{}");
    let calm = "lb_http2_errors_total{frame=\"goaway\",code=\"enhance_your_calm\"}";
    let flood = "lb_client_rejections_total{reason=\"http2_control_flood\"}";
    let before = metric(&lb, calm).await + metric(&lb, flood).await;
    let rounds = watched(&lb, "rapid reset", || async {
        let mut h2 = settled(&lb, &[]).await;
        let mut burst = Vec::new();
        for i in 0..10_000u32 {
            let stream = 2 * i + 1;
            burst.extend(frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                stream,
                &get_block("/", "x", &[]),
            ));
            burst.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
        }
        let _ = h2.send(&burst).await;
        assert!(h2.closed_within(PATIENCE).await, "still open after 10,000 resets");
    })
    .await;
    let grew = eventually(PATIENCE, async || {
        metric(&lb, calm).await + metric(&lb, flood).await > before
    })
    .await;
    assert!(grew, "neither {calm} nor {flood} counted it");
    let (reached, sent) = (demo.stat("requests").await.unwrap_or(0), rounds as u64 * 10_000);
    eprintln!("rapid reset: {reached} of {sent} reset streams reached the backend");
    assert!(
        reached * 20 < sent,
        "{reached} of {sent} reset streams reached the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_without_end_is_cut_off() {
    let demo = Demo::start("a");
    let (lb, _others) = start(&demo, "{}");
    let calm = "lb_http2_errors_total{frame=\"goaway\",code=\"enhance_your_calm\"}";
    let before = metric(&lb, calm).await;
    watched(&lb, "CONTINUATION flood", || async {
        let mut h2 = settled(&lb, &[]).await;
        let _ = h2.send(&frame(HEADERS, 0, 1, &get_block("/", "x", &[]))).await;
        let mut filler = Vec::new();
        literal("x-filler", &[b'f'; 1000], &mut filler);
        let mut sent = 0;
        // Far past any header list limit; lb must hang up long before.
        while sent < 100_000 && h2.send(&frame(CONTINUATION, 0, 1, &filler)).await.is_ok() {
            sent += 1;
        }
        assert!(
            h2.closed_within(PATIENCE).await,
            "still open after {sent} CONTINUATION frames"
        );
    })
    .await;
    counted(&lb, calm, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_ping_and_window_update_floods_are_cut_off() {
    let demo = Demo::start("a");
    let (lb, _others) = start(&demo, "{http2: {max_control_frames: 100}}");
    let flood = "lb_client_rejections_total{reason=\"http2_control_flood\"}";
    let floods = [
        ("SETTINGS", frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100])),
        ("PING", frame(PING, 0, 0, &[7; 8])),
        ("WINDOW_UPDATE", frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes())),
        ("PRIORITY", frame(PRIORITY, 0, 1, &[0, 0, 0, 0, 16])),
    ];
    for (name, one) in floods {
        let before = metric(&lb, flood).await;
        watched(&lb, &format!("{name} flood"), || async {
            let mut h2 = settled(&lb, &[]).await;
            // Pongs and ACKs are read and dropped, as a client that floods would.
            let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 5_000).collect();
            let _ = h2.send(&burst).await;
            assert!(
                h2.closed_within(PATIENCE).await,
                "{name}: still open after 5,000 frames"
            );
        })
        .await;
        counted(&lb, flood, before).await;
    }
    // A client within the budget is never cut off: a ping a second is nothing.
    let mut h2 = settled(&lb, &[]).await;
    for _ in 0..3 {
        h2.send(&frame(PING, 0, 0, &[1; 8])).await.expect("ping");
        let pong = h2.read_until(QUIET, |f| f.kind == PING).await;
        assert!(pong.iter().any(|f| f.kind == PING && f.flags & ACK != 0), "{pong:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_table_abuse_is_refused() {
    let demo = Demo::start("a");
    let (lb, _others) = start(&demo, "{}");
    let errors = async || {
        metric(
            &lb,
            "lb_http2_errors_total{frame=\"goaway\",code=\"compression_error\"}",
        )
        .await
            + metric(&lb, "lb_http2_errors_total{frame=\"goaway\",code=\"protocol_error\"}").await
    };
    let before = errors().await;
    watched(&lb, "HPACK abuse", || async {
        // A table size update past the 4 KiB lb allows: a connection error (h2 calls it a
        // protocol error).
        let mut h2 = settled(&lb, &[]).await;
        let mut block = Vec::new();
        integer(1 << 20, 5, 0x20, &mut block);
        block.extend(get_block("/", "x", &[]));
        let _ = h2.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)).await;
        let frames = h2.read_until(QUIET, |f| f.kind == GOAWAY).await;
        let goaway = frames.iter().find(|f| f.kind == GOAWAY);
        let code = goaway.and_then(Frame::error_code);
        assert!(matches!(code, Some(1 | 9)), "{frames:?}");
        // A small block that decodes huge (one 4 KB field, then 200 references to it): 431.
        let mut h2 = settled(&lb, &[]).await;
        let mut block = get_block("/", "x", &[]);
        indexed_literal("x-bomb", &[b'b'; 4000], &mut block);
        block.extend(std::iter::repeat_n(0x80 | 62, 200));
        let _ = h2.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)).await;
        let frames = h2
            .read_until(QUIET, |f| {
                f.kind == GOAWAY || f.kind == RST_STREAM || f.status().is_some()
            })
            .await;
        let status = frames.iter().find_map(Frame::status);
        let refused = frames.iter().any(|f| f.kind == GOAWAY || f.kind == RST_STREAM);
        assert!(status == Some(431) || refused, "{frames:?}");
        assert_ne!(status, Some(200), "the bomb was proxied: {frames:?}");
    })
    .await;
    assert!(
        eventually(PATIENCE, async || errors().await > before).await,
        "not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_limit_are_refused_and_the_others_served() {
    let demo = Demo::start("a");
    let (lb, _others) = start(&demo, "{http2: {max_concurrent_streams: 10}}");
    let refused = "lb_http2_errors_total{frame=\"rst_stream\",code=\"refused_stream\"}";
    let before = metric(&lb, refused).await;
    watched(&lb, "streams past the limit", || async {
        let mut h2 = settled(&lb, &[]).await;
        let mut burst = Vec::new();
        for i in 0..30u32 {
            burst.extend(frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                2 * i + 1,
                &get_block("/delay/500", "x", &[]),
            ));
        }
        h2.send(&burst).await.expect("send");
        let (mut answered, mut reset) = (0, 0);
        let frames = h2
            .read_until(QUIET, |f| {
                match f.kind {
                    RST_STREAM if f.error_code() == Some(7) => reset += 1,
                    DATA if f.flags & END_STREAM != 0 => answered += 1,
                    _ => {}
                }
                answered + reset == 30
            })
            .await;
        eprintln!("streams past the limit: {answered} answered, {reset} refused");
        assert_eq!(
            (answered, reset),
            (10, 20),
            "{:?}",
            frames.iter().map(|f| f.kind).collect::<Vec<_>>()
        );
    })
    .await;
    counted(&lb, refused, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_window_never_opens_ends_at_the_send_timeout() {
    let demo = Demo::start("a");
    let (lb, _others) = start(&demo, "{send_timeout: 1s}");
    let timeouts = "lb_client_rejections_total{reason=\"send_timeout\"}";
    let before = metric(&lb, timeouts).await;
    let inflight = format!("lb_backend_inflight{{pool=\"web\",backend=\"{}\"}}", demo.addr);
    watched(&lb, "window never opens", || async {
        // SETTINGS_INITIAL_WINDOW_SIZE 0: lb may send headers, never a byte of body.
        let mut h2 = settled(&lb, &[(4, 0)]).await;
        h2.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &get_block("/bytes/1000000", "x", &[]),
        ))
        .await
        .expect("send");
        let frames = h2.read_until(QUIET, |f| f.kind == RST_STREAM || f.kind == GOAWAY).await;
        assert!(
            frames.iter().any(|f| f.kind == RST_STREAM && f.stream == 1),
            "the stream was not ended: {frames:?}"
        );
    })
    .await;
    counted(&lb, timeouts, before).await;
    let released = eventually(PATIENCE, async || metric(&lb, &inflight).await == 0.0).await;
    assert!(released, "the backend's slot was kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_thousands_of_fields_gets_431() {
    let demo = Demo::start("a");
    let (lb, _others) = start(&demo, "{}");
    watched(&lb, "thousands of fields (HTTP/2)", || async {
        let mut h2 = settled(&lb, &[]).await;
        let fields: Vec<(String, String)> = (0..3000).map(|i| (format!("x-{i}"), "1".to_string())).collect();
        let extra: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let block = get_block("/", "x", &extra);
        // Split into frames of 16 KiB, as a client must.
        let mut chunks = block.chunks(16_000).peekable();
        let mut first = true;
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let (kind, flags) = match (first, last) {
                (true, true) => (HEADERS, END_HEADERS | END_STREAM),
                (true, false) => (HEADERS, END_STREAM),
                (false, true) => (CONTINUATION, END_HEADERS),
                (false, false) => (CONTINUATION, 0),
            };
            first = false;
            if h2.send(&frame(kind, flags, 1, chunk)).await.is_err() {
                break;
            }
        }
        let frames = h2
            .read_until(QUIET, |f| {
                f.kind == GOAWAY || f.kind == RST_STREAM || f.status().is_some()
            })
            .await;
        let status = frames.iter().find_map(Frame::status);
        assert!(
            status == Some(431) || frames.iter().any(|f| f.kind == GOAWAY || f.kind == RST_STREAM),
            "{frames:?}"
        );
        assert_ne!(status, Some(200), "3,000 fields were proxied");
    })
    .await;
    // 101 tiny fields fit in the header list, but not in what lb takes from any client.
    let mut h2 = settled(&lb, &[]).await;
    let fields: Vec<(String, String)> = (0..101).map(|i| (format!("x-{i}"), "1".to_string())).collect();
    let extra: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let block = get_block("/", "x", &extra);
    h2.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        .await
        .expect("send");
    let frames = h2.read_until(QUIET, |f| f.status().is_some()).await;
    assert_eq!(frames.iter().find_map(Frame::status), Some(431), "{frames:?}");
    assert_eq!(demo.stat("requests").await, Some(0), "the backend saw it");
}
