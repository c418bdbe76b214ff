//! Acceptance 3 and 4 of the core issue: a killed backend costs no client request and is ejected
//! and readmitted within `threshold × interval + interval`; a dead pool answers 503 at once; a
//! request no route matches gets 404.

mod common;

use common::client::{empty, request};
use common::{eventually, get, log_times, Client, Demo, Lb, PATIENCE};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[test]
fn log_times_are_parsed_as_utc() {
    let t = log_times("[1970-01-02T00:00:01.500Z WARN  x] pool", "pool");
    assert_eq!(t, [UNIX_EPOCH + Duration::from_millis(86_401_500)]);
    let t = log_times("[2026-11-21T05:11:51.937Z WARN  x] pool", "pool")[0];
    assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_millis(), 1_795_237_911_937);
}

const INTERVAL: Duration = Duration::from_secs(1);
const THRESHOLD: u32 = 2;

fn checked_pool(demos: &[&Demo], retries: u32, interval: Duration) -> String {
    let backends: Vec<String> = demos.iter().map(|d| d.yaml()).collect();
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
upstreams:
  web:
    retries: {retries}
    backends: [{}]
    health_check:
      path: /healthz
      interval: {}ms
      timeout: 500ms
      healthy_threshold: {THRESHOLD}
      unhealthy_threshold: {THRESHOLD}
",
        backends.join(", "),
        interval.as_millis()
    )
}

/// The first log time of `needle` after `since`, waiting for it up to PATIENCE.
async fn logged_after(lb: &Lb, needle: &str, since: SystemTime) -> Duration {
    let mut found = None;
    eventually(PATIENCE, async || {
        found = log_times(&lb.log(), needle).into_iter().find(|t| *t >= since);
        found.is_some()
    })
    .await;
    let at = found.unwrap_or_else(|| panic!("never logged {needle:?}:\n{}", lb.log()));
    at.duration_since(since).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_fails_no_request_and_is_ejected_then_readmitted() {
    let (a, mut b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let lb = Lb::start(&checked_pool(&[&a, &b, &c], 2, INTERVAL));
    let unhealthy = format!("pool web backend {} becomes unhealthy", b.addr);
    let healthy = format!("pool web backend {} becomes healthy", b.addr);
    let bound = INTERVAL * THRESHOLD + INTERVAL;

    let mut client = Client::connect(lb.addr).await.unwrap();
    let (mut killed_at, mut restarted_at) = (None, None);
    let mut seen = BTreeMap::<&str, BTreeMap<String, usize>>::new();
    for i in 0..500 {
        let resp = client.get("/").await.expect("request failed");
        assert_eq!(resp.status, 200, "request {i}: {}", resp.text());
        let phase = match (killed_at, restarted_at) {
            (None, _) => "before",
            (Some(_), None) => "down",
            (Some(_), Some(_)) => "after",
        };
        *seen.entry(phase).or_default().entry(resp.backend()).or_default() += 1;
        if i == 50 {
            b.kill();
            killed_at = Some(SystemTime::now());
        }
        if killed_at.is_some() && restarted_at.is_none() && lb.log().contains(&unhealthy) && i >= 150 {
            b.restart();
            restarted_at = Some(SystemTime::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed_at = killed_at.unwrap();
    let ejected_in = logged_after(&lb, &unhealthy, killed_at).await;
    assert!(ejected_in <= bound, "ejected after {ejected_in:?}, bound {bound:?}");
    let restarted_at = restarted_at.expect("b was never ejected during the run");
    let readmitted_in = logged_after(&lb, &healthy, restarted_at).await;
    assert!(
        readmitted_in <= bound,
        "readmitted after {readmitted_in:?}, bound {bound:?}"
    );
    assert!(!seen["down"].contains_key("b"), "a dead backend answered? {seen:?}");
    eprintln!("ejected in {ejected_in:?}, readmitted in {readmitted_in:?}, answers {seen:?}");

    // b takes traffic again, and each transition was logged exactly once.
    let mut back = false;
    for _ in 0..30 {
        back |= client.get("/").await.unwrap().backend() == "b";
    }
    assert!(back, "b never answered after readmission: {seen:?}");
    let log = lb.log();
    assert_eq!(log.matches(&unhealthy).count(), 1, "{log}");
    assert_eq!(log.matches(&healthy).count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_ejected_backends_answers_503_at_once() {
    let (mut a, mut b) = (Demo::start("a"), Demo::start("b"));
    let yaml = checked_pool(&[&a, &b], 2, Duration::from_millis(100));
    let lb = Lb::start(&yaml);
    assert_eq!(get(lb.addr, "/").await.unwrap().status, 200);
    a.kill();
    b.kill();
    let ejected = eventually(PATIENCE, async || log_times(&lb.log(), "becomes unhealthy").len() == 2).await;
    assert!(ejected, "{}", lb.log());
    // Each transition names its reason in words, not Pingora's error chain.
    let refused = "becomes unhealthy, connection refused";
    assert_eq!(lb.log().matches(refused).count(), 2, "{}", lb.log());
    let started = Instant::now();
    let resp = get(lb.addr, "/").await.unwrap();
    assert_eq!(resp.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(resp.body.len() < 100, "long body: {}", resp.text());
    // Refused by the pool, not after trying the dead backends (Pingora logs the failure just
    // after the response is sent).
    let logged = eventually(PATIENCE, async || lb.log().contains("Fail to proxy")).await;
    let log = lb.log();
    assert!(logged, "{log}");
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("Fail to proxy")).collect();
    assert!(
        failures
            .iter()
            .all(|l| l.contains("pool web: no usable backend: 2 unhealthy")),
        "a dead backend was tried:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backends_without_health_checks_answer_503_at_once() {
    let dead = [common::free_addr(), common::free_addr()];
    let yaml = format!(
        "listeners: [{{address: \"{{listen}}\"}}]\nupstreams:\n  web:\n    retries: 3\n    backends: [{{address: \"{}\"}}, {{address: \"{}\"}}]\n",
        dead[0], dead[1]
    );
    let lb = Lb::start(&yaml);
    let started = Instant::now();
    let resp = get(lb.addr, "/").await.unwrap();
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_no_route_matches_get_404_and_routes_pick_pools() {
    let (api, app) = (Demo::start("api"), Demo::start("app"));
    let yaml = format!(
        "listeners: [{{address: \"{{listen}}\"}}]
upstreams:
  api: {{backends: [{}]}}
  app: {{backends: [{}]}}
routes:
  - {{host: api.test, upstream: api}}
  - {{host: '*.app.test', path_prefix: /app/, upstream: app}}
",
        api.yaml(),
        app.yaml()
    );
    let lb = Lb::start(&yaml);
    let mut client = Client::connect(lb.addr).await.unwrap();
    let mut send = async |host: &str, path: &str| {
        let mut req = request("GET", path, empty());
        req.headers_mut().insert("host", host.parse().unwrap());
        client.send(req).await.unwrap()
    };
    assert_eq!(send("api.test", "/x").await.backend(), "api");
    assert_eq!(send("API.test:8080", "/").await.backend(), "api");
    assert_eq!(send("eu.app.test", "/app/1").await.backend(), "app");
    for (host, path) in [("other.test", "/"), ("eu.app.test", "/"), ("app.test", "/app/1")] {
        let resp = send(host, path).await;
        assert_eq!(resp.status, 404, "{host}{path}");
        assert!(resp.text().starts_with("404 Not Found"), "{}", resp.text());
    }
    // The connection survives a 404.
    assert_eq!(send("api.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dead_at_start_up_is_ejected_before_the_first_request() {
    let a = Demo::start("a");
    let dead = common::free_addr();
    let yaml = format!(
        "listeners: [{{address: \"{{listen}}\"}}]
upstreams:
  web:
    backends: [{}, {{address: \"{dead}\"}}]
    health_check: {{path: /healthz, interval: 1h, unhealthy_threshold: 3}}
",
        a.yaml()
    );
    let lb = Lb::start(&yaml);
    // The listener opened after one round of checks, which ejected the dead backend at once
    // (even though later rounds need 3 failures): no request even tries it.
    let mut client = Client::connect(lb.addr).await.unwrap();
    for _ in 0..20 {
        assert_eq!(client.get("/").await.unwrap().backend(), "a");
    }
    let log = lb.log();
    assert!(
        log.contains(&format!("pool web backend {dead} becomes unhealthy")),
        "{log}"
    );
    assert!(
        !log.contains("Fail to proxy"),
        "a request was sent to the dead backend:\n{log}"
    );
}
