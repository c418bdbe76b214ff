//! The admin API through the real binary: registration, weights, drain and ready, removal with
//! requests in flight, TTLs with and without heartbeats, changes under load, the bearer token,
//! the listener's separation from the proxy, and a clear 4xx for every malformed request.

mod common;

use common::admin::{backend_path, Api};
use common::load::start_load;
use common::{eventually, get, run_lb, tally, write_config, Demo, Lb, TempDir, PATIENCE};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// lb with pool `web` of `backends`, round robin, and an admin listener (plus `admin_extra`,
/// e.g. a token).
fn lb_with_admin(backends: &[&Demo], admin_extra: &str) -> Lb {
    let list: Vec<String> = backends.iter().map(|d| d.yaml()).collect();
    Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\", state_file: \"{{dir}}/state.json\"{admin_extra}}}
upstreams:
  web:
    backends: [{}]
",
        list.join(", ")
    ))
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Starts `n` requests of `/delay/{ms}` on their own connections; their statuses come back
/// through the handles.
fn slow_requests(lb: &Lb, n: usize, ms: u64) -> Vec<tokio::task::JoinHandle<(u16, String)>> {
    (0..n)
        .map(|_| {
            let addr = lb.addr;
            tokio::spawn(async move {
                let resp = get(addr, &format!("/delay/{ms}")).await.expect("slow request");
                (resp.status, resp.backend())
            })
        })
        .collect()
}

async fn inflight_on(api: &Api, backend: std::net::SocketAddr) -> u64 {
    api.backend("web", backend)
        .await
        .and_then(|b| b["inflight"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_weights_drain_ready_and_removal_take_effect_on_the_next_request() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let lb = lb_with_admin(&[&a, &b], "");
    let api = Api::new(lb.admin());
    assert_eq!(tally(&lb, "/", 20).await, counts(&[("a", 10), ("b", 10)]));

    // Register c: the very next requests see it (no period to wait for).
    let registered = Instant::now();
    let (status, json) = api.json("PUT", &backend_path("web", c.addr), None).await;
    assert_eq!((status, json["result"].as_str()), (201, Some("created")), "{json}");
    assert_eq!(json["backend"]["source"], "api");
    assert_eq!(
        tally(&lb, "/", 300).await,
        counts(&[("a", 100), ("b", 100), ("c", 100)])
    );
    assert!(registered.elapsed() < PATIENCE);
    // PUT again: nothing changes.
    let before = api.summary("web").await;
    let (status, json) = api.json("PUT", &backend_path("web", c.addr), Some("")).await;
    assert_eq!((status, json["result"].as_str()), (200, Some("renewed")), "{json}");
    assert_eq!(api.summary("web").await, before);
    assert_eq!(
        tally(&lb, "/", 300).await,
        counts(&[("a", 100), ("b", 100), ("c", 100)])
    );

    // Weight 3: c gets 3/5.
    let json = api.patch("web", c.addr, r#"{"weight": 3}"#).await;
    assert_eq!(json["backend"]["weight"], 3);
    assert_eq!(
        tally(&lb, "/", 500).await,
        counts(&[("a", 100), ("b", 100), ("c", 300)])
    );

    // Drain with a request in flight on c: no new request, the one in flight completes.
    let slow = slow_requests(&lb, 5, 1500);
    assert!(eventually(PATIENCE, async || inflight_on(&api, c.addr).await >= 1).await);
    let json = api.patch("web", c.addr, r#"{"state": "drain"}"#).await;
    assert_eq!(json["backend"]["state"], "drain");
    assert_eq!(tally(&lb, "/", 100).await, counts(&[("a", 50), ("b", 50)]));
    for task in slow {
        assert_eq!(task.await.unwrap().0, 200, "an in-flight request failed on drain");
    }
    // The slot is given back when the request's state goes, just after its answer went out.
    assert!(eventually(PATIENCE, async || inflight_on(&api, c.addr).await == 0).await);

    // Ready again.
    api.patch("web", c.addr, r#"{"state": "ready"}"#).await;
    assert_eq!(
        tally(&lb, "/", 500).await,
        counts(&[("a", 100), ("b", 100), ("c", 300)])
    );

    // DELETE with a request in flight to it: it completes, and nothing new goes there.
    let slow = slow_requests(&lb, 5, 1500);
    assert!(eventually(PATIENCE, async || inflight_on(&api, c.addr).await >= 1).await);
    let json = api.delete("web", c.addr).await;
    assert_eq!(json["result"], "removed");
    assert!(api.backend("web", c.addr).await.is_none());
    assert_eq!(tally(&lb, "/", 100).await, counts(&[("a", 50), ("b", 50)]));
    let finished: Vec<(u16, String)> = futures_join(slow).await;
    assert!(finished.iter().all(|(s, _)| *s == 200), "{finished:?}");
    assert!(
        finished.iter().any(|(_, name)| name == "c"),
        "none was in flight on c: {finished:?}"
    );
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_and_deleting_under_load_fails_no_request() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let lb = lb_with_admin(&[&a, &b, &c], "");
    let api = Api::new(lb.admin());
    let (load, tasks) = start_load(lb.addr, 8);
    let at = |n: u64| {
        let load = &load;
        async move { eventually(PATIENCE, async || load.ok.load(Ordering::Relaxed) >= n).await }
    };
    assert!(at(500).await, "the load did not get going");
    api.patch("web", b.addr, r#"{"state": "drain"}"#).await;
    let drained_at = load.ok.load(Ordering::Relaxed);
    assert!(at(drained_at + 500).await);
    api.delete("web", c.addr).await;
    let deleted_at = load.ok.load(Ordering::Relaxed);
    load.mark.store(true, Ordering::Relaxed);
    assert!(at(deleted_at + 1000).await);
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let errors = load.errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    let after = load.after_mark.lock().unwrap().clone();
    assert_eq!(
        after.into_iter().collect::<Vec<_>>(),
        ["a"],
        "drained / deleted backends still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_registration_expires_without_heartbeats_and_stays_with_them() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let lb = lb_with_admin(&[&a], "");
    let api = Api::new(lb.admin());
    api.put("web", b.addr, r#"{"ttl": "1s"}"#).await;
    let registered = Instant::now();
    api.put("web", c.addr, r#"{"ttl": "1s"}"#).await;
    let ttl = api.backend("web", c.addr).await.unwrap()["ttl_remaining_s"]
        .as_f64()
        .unwrap();
    assert!(ttl > 0.5 && ttl <= 1.0, "{ttl}");

    // c sends a heartbeat every 250 ms for 3 s; b sends none.
    let heartbeats = tokio::spawn({
        let api = Api::new(lb.admin());
        let addr = c.addr;
        async move {
            for _ in 0..12 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                api.put("web", addr, r#"{"ttl": "1s"}"#).await;
            }
        }
    });
    assert!(
        eventually(PATIENCE, async || api.backend("web", b.addr).await.is_none()).await,
        "b never expired"
    );
    let gone_after = registered.elapsed();
    assert!(gone_after < Duration::from_secs(2), "b expired after {gone_after:?}");
    heartbeats.await.unwrap();
    assert!(
        api.backend("web", c.addr).await.is_some(),
        "c expired despite its heartbeats"
    );
    let seen = tally(&lb, "/", 20).await;
    assert_eq!(seen, counts(&[("a", 10), ("c", 10)]));
    assert!(lb
        .log()
        .contains(&format!("backend {} removed: no heartbeat within its TTL", b.addr)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_call_without_it_is_401_and_the_api_is_not_behind_the_proxy() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let lb = lb_with_admin(&[&a], ", token: s3cret-token");
    let calls = [
        ("GET", "/api/v1/pools".to_string(), None),
        ("GET", "/api/v1/pools/web".to_string(), None),
        ("GET", "/api/v1/openapi.json".to_string(), None),
        ("GET", "/api/v1/history".to_string(), None),
        ("GET", "/api/v1/overview".to_string(), None),
        ("GET", "/api/v1/events".to_string(), None),
        ("GET", "/metrics".to_string(), None),
        ("PUT", backend_path("web", b.addr), Some("{}")),
        ("PATCH", backend_path("web", a.addr), Some(r#"{"state": "drain"}"#)),
        ("DELETE", backend_path("web", a.addr), None),
        ("POST", "/api/v1/reload".to_string(), None),
    ];
    for token in [None, Some("wrong"), Some("s3cret-token-and-more")] {
        let api = Api {
            addr: lb.admin(),
            token: token.map(str::to_string),
        };
        for (method, path, body) in &calls {
            let resp = api.call(method, path, *body).await;
            assert_eq!(resp.status, 401, "{method} {path} with {token:?}");
            assert!(resp.header("www-authenticate").starts_with("Bearer"));
            let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
            assert!(json["error"].as_str().unwrap().contains("bearer token"), "{json}");
        }
    }
    let api = Api::with_token(lb.admin(), "s3cret-token");
    assert_eq!(api.json("GET", "/api/v1/pools", None).await.0, 200);
    assert_eq!(
        api.summary("web").await.len(),
        1,
        "nothing changed by the refused calls"
    );
    // The page itself and the probes need no token (they hold no state).
    assert_eq!(Api::new(lb.admin()).call("GET", "/", None).await.status, 200);
    assert_eq!(Api::new(lb.admin()).call("GET", "/healthz", None).await.status, 200);

    // Through the proxy listener the same path is just a request for the backend.
    let resp = get(lb.addr, "/api/v1/pools").await.unwrap();
    assert_eq!(resp.backend(), "a");
    assert!(!resp.text().contains("\"pools\""), "{}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_overview_and_events_report_what_lb_saw_and_every_documented_path_is_served() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let lb = lb_with_admin(&[&a], "");
    let api = Api::new(lb.admin());
    api.put("web", b.addr, "{}").await;
    api.patch("web", b.addr, r#"{"state": "drain"}"#).await;
    tally(&lb, "/", 10).await;
    let (status, events) = api.json("GET", "/api/v1/events", None).await;
    assert_eq!(status, 200);
    let kinds: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, ["changed", "registered"], "{events}");
    assert!(events["events"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("state ready → drain"));

    // Once a sample holds the traffic, the history has it, and `since` cuts it.
    let sampled = eventually(PATIENCE, async || {
        let (_, h) = api.json("GET", "/api/v1/history", None).await;
        h["pools"][0]["requests_per_s"]
            .as_array()
            .is_some_and(|r| r.iter().any(|v| v.as_f64() > Some(0.0)))
    })
    .await;
    assert!(sampled, "the history never showed the traffic");
    let (_, h) = api.json("GET", "/api/v1/history", None).await;
    let times = h["times"].as_array().unwrap().clone();
    let backends = h["pools"][0]["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    for b in backends {
        assert_eq!(b["requests_per_s"].as_array().unwrap().len(), times.len(), "{b}");
    }
    let last = times.last().unwrap();
    let (_, after) = api.json("GET", &format!("/api/v1/history?since={last}"), None).await;
    assert!(
        after["times"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.as_u64() > last.as_u64()),
        "{after}"
    );
    let (status, bad) = api.json("GET", "/api/v1/history?since=yesterday", None).await;
    assert_eq!(status, 400, "{bad}");
    let (_, overview) = api.json("GET", "/api/v1/overview", None).await;
    assert_eq!(overview["pools"][0]["name"], "web");
    assert_eq!(
        overview["pools"][0]["problems"],
        serde_json::json!(["1 draining"]),
        "{overview}"
    );
    assert!(overview["requests_per_s"].as_f64().unwrap() > 0.0, "{overview}");
    assert_eq!(overview["error_ratio"], 0.0);

    // Every GET of the OpenAPI document is served (none falls through to "nothing at").
    let (_, doc) = api.json("GET", "/api/v1/openapi.json", None).await;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        // A route's own path needs a named route: tests/split.rs serves it.
        if ops.get("get").is_none() || path.contains("{route}") {
            continue;
        }
        let path = path.replace("{pool}", "web").replace("{address}", &a.addr.to_string());
        let resp = api.call("GET", &path, None).await;
        assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
    }
}

#[test]
fn a_non_loopback_admin_address_without_a_token_is_refused_at_start() {
    let dir = TempDir::new("admin-open");
    let yaml = "listeners: [{address: \"{listen}\"}]\nadmin: {address: 0.0.0.0:19900}\nupstreams: {web: {backends: [{address: 127.0.0.1:9}]}}\n";
    let conf = write_config(&dir, yaml, common::free_addr());
    let conf = conf.to_str().unwrap();
    for args in [vec!["-t", "-c", conf], vec!["-c", conf]] {
        let (status, _, err) = run_lb(&args);
        assert_eq!(status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("admin.address: 0.0.0.0:19900 is not a loopback address: set token"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_request_gets_its_4xx_and_changes_nothing() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let lb = lb_with_admin(&[&a], "");
    let api = Api::new(lb.admin());
    let before = api.summary("web").await;
    let put = backend_path("web", b.addr);
    let oversized = format!("{{\"weight\": 1, \"pad\": \"{}\"}}", "x".repeat(70_000));
    let cases: Vec<(&str, String, Option<&str>, u16, &str)> = vec![
        ("PUT", put.clone(), Some("{\"weight\": 2"), 400, "invalid JSON"),
        ("PUT", put.clone(), Some("{\"weight\": \"2\"}"), 400, "invalid type"),
        (
            "PUT",
            put.clone(),
            Some("{\"weight\": 0}"),
            400,
            "weight 0 is not allowed",
        ),
        ("PUT", put.clone(), Some("{\"weight\": 999}"), 400, "out of range"),
        (
            "PUT",
            put.clone(),
            Some("{\"state\": \"sleep\"}"),
            400,
            "unknown variant",
        ),
        (
            "PUT",
            put.clone(),
            Some("{\"ttl\": \"soon\"}"),
            400,
            "is not a duration",
        ),
        ("PUT", put.clone(), Some("{\"colour\": 1}"), 400, "unknown field"),
        ("PUT", put.clone(), Some(&oversized), 413, "larger than"),
        ("PUT", backend_path("nope", b.addr), Some("{}"), 404, "no pool named"),
        (
            "PUT",
            "/api/v1/pools/web/backends/10.0.0.x:80".into(),
            Some("{}"),
            400,
            "is not an IP:port",
        ),
        (
            "PUT",
            "/api/v1/pools/web/backends/localhost:80".into(),
            Some("{}"),
            400,
            "is not an IP:port",
        ),
        (
            "PATCH",
            backend_path("web", b.addr),
            Some("{\"state\": \"drain\"}"),
            404,
            "not in this pool",
        ),
        (
            "PATCH",
            backend_path("web", a.addr),
            Some("{}"),
            400,
            "nothing to change",
        ),
        (
            "PATCH",
            backend_path("web", a.addr),
            Some("{\"state\": \"off\"}"),
            400,
            "unknown variant",
        ),
        (
            "PATCH",
            backend_path("web", a.addr),
            Some("{\"weight\": -3}"),
            400,
            "invalid JSON",
        ),
        ("DELETE", backend_path("web", b.addr), None, 404, "not in this pool"),
        ("POST", backend_path("web", a.addr), None, 405, "method not allowed"),
        ("DELETE", "/api/v1/pools".into(), None, 405, "method not allowed"),
        ("GET", "/api/v2/pools".into(), None, 404, "nothing at"),
        ("GET", "/api/v1/pools/nope".into(), None, 404, "no pool named"),
    ];
    for (method, path, body, status, needle) in cases {
        let resp = api.call(method, &path, body).await;
        let json: serde_json::Value =
            serde_json::from_slice(&resp.body).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {}", resp.text()));
        assert_eq!(resp.status, status, "{method} {path} {body:?}: {json}");
        let message = json["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{method} {path}: {message:?} lacks {needle:?}"
        );
        assert_eq!(api.summary("web").await, before, "{method} {path} changed the pool");
    }
    assert!(
        !lb.dir.path("state.json").exists(),
        "a refused change reached the state file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_admin_requests_never_crash_lb_nor_get_a_5xx() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Demo::start("a");
    let lb = lb_with_admin(&[&a], "");
    let methods = [
        "GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "OPTIONS", "PUT", "PATCH",
    ];
    let paths = [
        "/api/v1/pools/web/backends/127.0.0.1:1",
        "/api/v1/pools/web/backends/[::1]:2",
        "/api/v1/pools/web/backends/%5B%3A%3A1%5D:3",
        "/api/v1/pools/web/backends/%ZZ",
        "/api/v1/pools/web/backends/",
        "/api/v1/pools/%00/backends/127.0.0.1:1",
        "/api/v1/pools/web",
        "/api/v1/pools",
        "/api/v1//pools",
        "/api/v1/reload/x",
        "/metrics",
        "/%2e%2e/%2e%2e/etc/passwd",
    ];
    let bodies = [
        "",
        "{}",
        "null",
        "[]",
        "{\"weight\": 18446744073709551616}",
        "{\"weight\": 1e3}",
        "{\"ttl\": \"99999999999999999h\"}",
        "{\"ttl\": null, \"max_connections\": null}",
        "{\"state\": \"ready\", \"weight\": 256}",
        "{\"max_connections\": 0}",
        "\u{0}\u{1}\u{2}",
        "{\"weight\": 2, \"weight\": 3}",
        "{\"a\":{\"b\":{\"c\":[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}}}",
        "\"just a string\"",
    ];
    let mut rng = common::rng::XorShift(0x9e37_79b9_7f4a_7c15);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..600 {
        assert!(Instant::now() < deadline, "fuzzing took too long (at {i})");
        let (method, path) = (*rng.pick(&methods), *rng.pick(&paths));
        let mut body = rng.pick(&bodies).as_bytes().to_vec();
        // Flip a few bytes of the body now and then.
        for _ in 0..(rng.next() % 3) {
            if !body.is_empty() {
                let at = (rng.next() % body.len() as u64) as usize;
                body[at] = rng.next() as u8;
            }
        }
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut conn = tokio::net::TcpStream::connect(lb.admin())
            .await
            .expect("admin listener gone");
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&body).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut answer)).await;
        let status: u16 = String::from_utf8_lossy(answer.get(9..12).unwrap_or_default())
            .parse()
            .unwrap_or(0);
        assert!(
            (200..500).contains(&status),
            "{method} {path} {:?} got {status}: {}",
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&answer)
        );
    }
    // Raw garbage instead of HTTP.
    for junk in [
        &b"\x16\x03\x01\x02\x00"[..],
        b"GET\r\n\r\n",
        b"PUT /api/v1/pools HTTP/9.9\r\n\r\n",
        &[0xff; 4096],
    ] {
        let mut conn = tokio::net::TcpStream::connect(lb.admin()).await.unwrap();
        let _ = conn.write_all(junk).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut answer)).await;
    }
    assert!(lb.proc.0.id() > 0);
    let api = Api::new(lb.admin());
    assert_eq!(
        api.json("GET", "/api/v1/pools", None).await.0,
        200,
        "lb stopped answering"
    );
    assert!(!lb.log().contains("panicked"), "{}", lb.log());
}
