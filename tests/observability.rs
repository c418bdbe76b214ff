//! Production features through the real binary: the access log (nginx combined format plus
//! pool, backend, tries and timings, written off the request path) and the Prometheus metrics.

mod common;

use common::client::{empty, request};
use common::{eventually, get, Client, Demo, Lb, PATIENCE};

/// lb with an access log (`access.log` in its directory) and metrics, in front of pool `web` of
/// backend `a`, with `extra` appended to the config; returns lb and the metrics address.
fn observed(a: &Demo, extra: &str) -> (Lb, std::net::SocketAddr) {
    let metrics = common::free_addr();
    let yaml = format!(
        "listeners: [{{address: \"{{listen}}\"}}]
access_log: {{path: \"{{dir}}/access.log\"}}
metrics: {{address: \"{metrics}\"}}
upstreams:
  web:
    backends: [{}]
{extra}",
        a.yaml()
    );
    (Lb::start(&yaml), metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_an_access_log_line_and_metrics_count_it() {
    let a = Demo::start("a");
    let extra = "    health_check: {path: /healthz, interval: 1s}
routes:
  - {path_prefix: /app/, upstream: web}
  - {path_prefix: /status/, upstream: web}
";
    let (lb, metrics) = observed(&a, extra);
    let mut client = Client::connect(lb.addr).await.unwrap();
    let mut req = request("GET", "/app/x?y=1", empty());
    req.headers_mut()
        .insert("user-agent", "test \"agent\"/1".parse().unwrap());
    req.headers_mut()
        .insert("referer", "http://example.test/".parse().unwrap());
    assert_eq!(client.send(req).await.unwrap().status, 200);
    assert_eq!(client.get("/elsewhere").await.unwrap().status, 404);
    assert_eq!(client.get("/status/503").await.unwrap().status, 503);

    let path = lb.dir.path("access.log");
    let written = eventually(PATIENCE, async || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() == 3)
    })
    .await;
    let log = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(written, "access log:\n{log}");
    let lines: Vec<&str> = log.lines().collect();
    let upstream = format!("pool=web upstream={} tries=1 rt=", a.addr);
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{}", lines[0]);
    assert!(
        lines[0].contains("] \"GET /app/x?y=1 HTTP/1.1\" 200 2 \"http://example.test/\" \"test \\x22agent\\x22/1\" "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(&upstream)
            && lines[0]
                .split(" urt=")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .is_some_and(|t| t.parse::<f64>().is_ok()),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"GET /elsewhere HTTP/1.1\" 404 ")
            && lines[1].contains(" pool=- upstream=- tries=0 rt=0.000 urt=- route=- request_id="),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("\"GET /status/503 HTTP/1.1\" 503 "), "{}", lines[2]);

    let text = get(metrics, "/metrics").await.unwrap().text();
    for sample in [
        format!("lb_backend_requests_total{{pool=\"web\",backend=\"{}\"}} 2", a.addr),
        format!("lb_backend_up{{pool=\"web\",backend=\"{}\"}} 1", a.addr),
        format!("lb_backend_inflight{{pool=\"web\",backend=\"{}\"}} 0", a.addr),
        "lb_requests_total{pool=\"web\",code=\"2xx\"} 1".to_string(),
        "lb_requests_total{pool=\"web\",code=\"5xx\"} 1".to_string(),
        "lb_pool_refused_total{pool=\"web\",reason=\"none_ready\"} 0".to_string(),
        "# TYPE lb_backend_requests_total counter".to_string(),
    ] {
        assert!(text.contains(&sample), "missing {sample:?} in\n{text}");
    }
    assert_eq!(get(metrics, "/").await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_is_logged_as_499_at_info_not_as_an_error() {
    use tokio::io::AsyncWriteExt;

    let a = Demo::start("a");
    let (lb, metrics) = observed(&a, "");
    let inflight = format!("lb_backend_inflight{{pool=\"web\",backend=\"{}\"}} ", a.addr);
    let at_backend = async |n: &str| {
        get(metrics, "/metrics")
            .await
            .is_ok_and(|r| r.text().contains(&format!("{inflight}{n}\n")))
    };

    // The request reaches the backend (which answers in 5 s), then the client hangs up.
    let mut conn = tokio::net::TcpStream::connect(lb.addr).await.unwrap();
    conn.write_all(b"GET /delay/5000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert!(
        eventually(PATIENCE, async || at_backend("1").await).await,
        "the request never reached the backend"
    );
    drop(conn);
    assert!(
        eventually(PATIENCE, async || at_backend("0").await).await,
        "the backend slot was not released"
    );

    let path = lb.dir.path("access.log");
    let logged = eventually(PATIENCE, async || {
        std::fs::read_to_string(&path).is_ok_and(|t| !t.is_empty())
    })
    .await;
    let access = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(logged, "no access log line");
    assert!(access.contains("\"GET /delay/5000 HTTP/1.1\" 499 0 "), "{access}");
    let log = lb.log();
    let abort = log.lines().filter(|l| l.contains("client side:")).collect::<Vec<_>>();
    assert!(abort.len() == 1 && abort[0].contains(" INFO "), "{log}");
    assert!(!log.contains("Fail to proxy"), "{log}");
}
