//! Verified rollouts through the real binary, lb-demo backends as baseline (`a`) and candidate
//! (`b`): a candidate that answers like the baseline goes through the shadow phase and every
//! step and is promoted, the split clients see at each step within ±3% of the step's share over
//! 1,000 requests; one that answers 5% 500s is rolled back at its first step; one whose JSON
//! differs in a field not ignored is stopped in the shadow phase before any client reaches it,
//! while ignored fields do not count; `split_by` keeps each client on its side; two instances
//! with etcd apply the same step, the survivor of a killed driver goes on without repeating or
//! skipping a step, and a restart of both resumes; every bad body gets its 4xx with a JSON error
//! and changes nothing. Run on both request loops (`LB_PROXY_PATH=pingora` for Pingora's).

mod common;

use common::admin::Api;
use common::client::{empty, request, Client};
use common::etcd::Etcd;
use common::{eventually, tally, Demo, Lb, PATIENCE};
use serde_json::Value;
use std::collections::BTreeMap;

/// Pools `api` (backend `a`) and `v2` (backend `b`), a route `main` to `api`, the admin API, and
/// `extra` (a `rollouts:` section, a `cluster:` section...).
fn config(a: &Demo, b: &Demo, extra: &str) -> String {
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\", state_file: \"{{dir}}/state.json\"}}
upstreams:
  api: {{backends: [{}]}}
  v2: {{backends: [{}]}}
routes:
  - {{name: main, upstream: api}}
{extra}",
        a.yaml(),
        b.yaml()
    )
}

/// A rollout of route `main` from `api` to `v2` through steps 10%, 50%, 100%, a second each,
/// judged on 20 requests, with `shadow` (a `shadow:` mapping, or empty) and `more` fields.
fn rollout(shadow: &str, more: &str) -> String {
    let shadow = if shadow.is_empty() {
        String::new()
    } else {
        format!(", shadow: {shadow}")
    };
    format!(
        "{{route: main, baseline: api, candidate: v2, steps: [10%, 50%, 100%], step_every: 1s, \
         gates: {{min_requests: 20, max_error_ratio_delta: 1%, max_p99_ratio: 100}}{shadow}{more}}}"
    )
}

/// The shadow phase of the tests: every request copied for a second, statuses, `Content-Type`
/// and JSON bodies compared, the timestamp and the backend's name ignored.
const SHADOW: &str = "{sample: 100%, duration: 1s, max_divergence: 1%, \
    compare: {status: true, headers: [Content-Type], body: json}, ignore: [$.timestamp, $.backend]}";

/// Route `main`'s rollout as instance `api` shows it.
async fn state(api: &Api) -> Value {
    let (status, json) = api.json("GET", "/api/v1/rollouts/main", None).await;
    assert_eq!(status, 200, "{json}");
    json
}

/// `POST /api/v1/rollouts/main/{action}`, expected to succeed.
async fn act(api: &Api, action: &str) -> Value {
    let (status, json) = api.json("POST", &format!("/api/v1/rollouts/main/{action}"), None).await;
    assert_eq!(status, 200, "{action}: {json}");
    json
}

/// Sends `n` requests of `/json` to `lb` on one connection: answers per backend, every one 200.
async fn send(lb: &Lb, n: usize) -> BTreeMap<String, usize> {
    tally(lb, "/json", n).await
}

/// Keeps sending to `lb` until route `main`'s rollout is in `phase` (and at `step`, when given);
/// returns the state, and what the clients got on the way while it was not (a batch during
/// which it got there is left out).
async fn until(lb: &Lb, api: &Api, phase: &str, step: Option<u64>) -> (Value, BTreeMap<String, usize>) {
    let mut seen = BTreeMap::new();
    let mut batch = BTreeMap::new();
    let end = std::time::Instant::now() + PATIENCE;
    loop {
        let s = state(api).await;
        if s["phase"] == phase && step.is_none_or(|n| s["step"] == n) {
            return (s, seen);
        }
        for (backend, n) in std::mem::take(&mut batch) {
            *seen.entry(backend).or_insert(0) += n;
        }
        assert!(
            std::time::Instant::now() < end,
            "not {phase} {step:?}: {s}\n{}",
            lb.log()
        );
        batch = send(lb, 20).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_like_the_baseline_is_shadowed_stepped_and_promoted() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let yaml = config(&a, &b, &format!("rollouts: [{}]", rollout(SHADOW, "")));
    let lb = Lb::start(&yaml);
    let api = Api::new(lb.admin());
    assert_eq!(state(&api).await["phase"], "shadow");

    // The shadow phase: the candidate gets copies, no client sees it.
    let (s, seen) = until(&lb, &api, "steps", Some(1)).await;
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["a"],
        "a client saw the candidate in the shadow phase"
    );
    assert!(
        b.stat("requests").await.unwrap_or(0) >= 20,
        "the candidate got no copies"
    );
    let history: Vec<&str> = s["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["event"].as_str())
        .collect();
    assert_eq!(history, ["started", "step"], "{s}");
    let compared = api
        .metric("lb_shadow_comparisons_total{route=\"main\"}")
        .await
        .unwrap_or(0.0);
    assert!(compared >= 20.0, "{compared}");
    assert_eq!(
        api.metric("lb_shadow_divergences_total{route=\"main\",kind=\"body\"}")
            .await,
        None
    );

    // Each step, paused to count: the share within ±3% of the step's over 1,000 requests.
    for (step, share) in [(1, 10.0), (2, 50.0), (3, 100.0)] {
        until(&lb, &api, "steps", Some(step)).await;
        act(&api, "pause").await;
        assert_eq!(api.metric("lb_rollout_step{route=\"main\"}").await, Some(step as f64));
        let counts = send(&lb, 1000).await;
        let got = counts.get("b").copied().unwrap_or(0) as f64 / 10.0;
        assert!(
            (got - share).abs() <= 3.0,
            "step {step}: {got}% to the candidate, not {share}%: {counts:?}"
        );
        act(&api, "resume").await;
    }
    let (s, _) = until(&lb, &api, "promoted", None).await;
    assert_eq!(s["share"], 100.0, "{s}");
    assert_eq!(send(&lb, 50).await.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(
        api.metric("lb_rollout_phase{route=\"main\",phase=\"promoted\",paused=\"false\"}")
            .await,
        Some(1.0)
    );
    // The promotion is kept: a restart serves the route from the candidate.
    let lb = lb.restart();
    assert_eq!(send(&lb, 20).await.keys().collect::<Vec<_>>(), ["b"], "{}", lb.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_with_errors_is_rolled_back_at_its_first_step() {
    let (a, b) = (Demo::start("a"), Demo::start_with("b", &["--fail-rate", "0.05"]));
    let lb = Lb::start(&config(&a, &b, ""));
    let api = Api::new(lb.admin());
    let body = serde_json::json!({
        "route": "main", "baseline": "api", "candidate": "v2", "steps": ["10%", "50%", "100%"],
        "step_every": "1m", "gates": {"min_requests": 100, "max_error_ratio_delta": "0.5%", "max_p99_ratio": 100}
    });
    let (status, json) = api.json("POST", "/api/v1/rollouts", Some(&body.to_string())).await;
    assert_eq!((status, json["phase"].as_str()), (201, Some("steps")), "{json}");
    // Clients get the candidate's 500s until the gate sees them: tally would refuse those.
    let mut client = Client::connect(lb.addr).await.expect("connect");
    let rolled = eventually(PATIENCE, async || {
        for _ in 0..50 {
            client.get("/json").await.expect("request");
        }
        state(&api).await["phase"] == "rolled_back"
    })
    .await;
    let s = state(&api).await;
    assert!(rolled, "{s}\n{}", lb.log());
    assert_eq!(
        s["history"].as_array().map(Vec::len),
        Some(2),
        "rolled back at the first step: {s}"
    );
    assert!(s["reason"].as_str().is_some_and(|r| r.contains("5xx")), "{s}");
    assert_eq!(
        send(&lb, 100).await.keys().collect::<Vec<_>>(),
        ["a"],
        "the candidate lost its share at once"
    );
    assert_eq!(api.metric("lb_rollout_share{route=\"main\"}").await, Some(0.0));
    assert!(lb.log().contains("rollout rolled_back"), "{}", lb.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_whose_json_differs_never_reaches_a_client() {
    let (a, b) = (Demo::start("a"), Demo::start_with("b", &["--api-version", "2"]));
    let lb = Lb::start(&config(&a, &b, &format!("rollouts: [{}]", rollout(SHADOW, ""))));
    let api = Api::new(lb.admin());
    let (s, seen) = until(&lb, &api, "rolled_back", None).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a"], "{seen:?}");
    assert_eq!(s["step"], 0, "{s}");
    assert!(s["reason"].as_str().is_some_and(|r| r.starts_with("shadow")), "{s}");
    let samples = s["divergences"].as_array().cloned().unwrap_or_default();
    let first = samples.first().cloned().unwrap_or_default();
    assert_eq!(
        (first["kind"].as_str(), first["path"].as_str()),
        (Some("body"), Some("/json")),
        "{s}"
    );
    assert_eq!(
        first["paths"],
        serde_json::json!(["$.version"]),
        "only the field not ignored: {s}"
    );
    let body = api
        .metric("lb_shadow_divergences_total{route=\"main\",kind=\"body\"}")
        .await;
    assert!(body.is_some_and(|n| n >= 20.0), "{body:?}");
    // The client-facing split never changed: every request went to the baseline.
    assert_eq!(send(&lb, 50).await.keys().collect::<Vec<_>>(), ["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_by_keeps_each_client_on_its_side() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let more = ", split_by: {cookie: lb_rollout}";
    let yaml = config(
        &a,
        &b,
        &format!("rollouts: [{}]", rollout("", more).replace("1s", "1h")),
    );
    let lb = Lb::start(&yaml);
    assert_eq!(state(&Api::new(lb.admin())).await["share"], 10.0);
    let mut sides = BTreeMap::new();
    for _ in 0..60 {
        let mut client = Client::connect(lb.addr).await.expect("connect");
        let first = client.get("/json").await.expect("request");
        let cookie = first.header("set-cookie");
        let cookie = cookie.split(';').next().unwrap_or_default().to_string();
        assert!(cookie.starts_with("lb_rollout="), "{cookie:?}");
        for _ in 0..5 {
            let mut req = request("GET", "/json", empty());
            req.headers_mut().insert("cookie", cookie.parse().expect("cookie"));
            let again = client.send(req).await.expect("request");
            assert_eq!(again.backend(), first.backend(), "a client changed sides within a step");
        }
        *sides.entry(first.backend()).or_insert(0) += 1;
    }
    assert_eq!(sides.values().sum::<usize>(), 60);
    assert_eq!(sides.get("b"), Some(&6), "10% of 60 new clients: {sides:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_their_4xx_and_change_nothing() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let lb = Lb::start(&config(&a, &b, ""));
    let api = Api::new(lb.admin());
    let good = r#""route": "main", "baseline": "api", "candidate": "v2""#;
    for (body, status, says) in [
        (
            r#"{"route": "nope", "baseline": "api", "candidate": "v2", "steps": ["5%"]}"#.to_string(),
            400,
            "route: no route",
        ),
        (
            r#"{"route": "main", "baseline": "api", "candidate": "v9", "steps": ["5%"]}"#.to_string(),
            400,
            "candidate: no upstream",
        ),
        (
            r#"{"route": "main", "baseline": "v2", "candidate": "api", "steps": ["5%"]}"#.to_string(),
            400,
            "baseline: route",
        ),
        (format!(r#"{{{good}, "steps": ["50%", "10%"]}}"#), 400, "steps[1]"),
        (
            format!(r#"{{{good}, "steps": ["50%", "150%"]}}"#),
            400,
            "from 0% to 100%",
        ),
        (
            format!(r#"{{{good}, "steps": ["5%"], "gates": {{"max_p99_ratio": 0.5}}}}"#),
            400,
            "gates.max_p99_ratio",
        ),
        (
            format!(r#"{{{good}, "steps": ["5%"], "gates": {{"min_requests": 0}}}}"#),
            400,
            "gates.min_requests",
        ),
        (
            format!(r#"{{{good}, "steps": ["5%"], "surprise": 1}}"#),
            400,
            "unknown field",
        ),
        (format!(r#"{{{good}}}"#), 400, "missing field `steps`"),
        ("[1]".to_string(), 400, "expected an object"),
        ("{".to_string(), 400, "invalid JSON"),
        (String::new(), 400, "needs a JSON body"),
    ] {
        let (got, json) = api.json("POST", "/api/v1/rollouts", Some(&body)).await;
        let error = json["error"].as_str().unwrap_or_default();
        assert_eq!(got, status, "{body}: {json}");
        assert!(error.contains(says), "{body}: {error}");
    }
    let (status, json) = api.json("GET", "/api/v1/rollouts", None).await;
    assert_eq!(
        (status, json["rollouts"].clone()),
        (200, serde_json::json!([])),
        "nothing changed"
    );
    assert_eq!(api.json("GET", "/api/v1/rollouts/main", None).await.0, 404);
    assert_eq!(api.json("POST", "/api/v1/rollouts/main/pause", None).await.0, 404);
    assert_eq!(api.json("POST", "/api/v1/rollouts/main/explode", None).await.0, 404);
    // One running rollout per route: a second is a conflict; an ended one cannot be paused.
    let body = format!(r#"{{{good}, "steps": ["5%"], "step_every": "1h"}}"#);
    assert_eq!(api.json("POST", "/api/v1/rollouts", Some(&body)).await.0, 201);
    let (status, json) = api.json("POST", "/api/v1/rollouts", Some(&body)).await;
    assert_eq!(status, 409, "{json}");
    act(&api, "abort").await;
    assert_eq!(api.json("POST", "/api/v1/rollouts/main/pause", None).await.0, 409);
    assert_eq!(send(&lb, 20).await.keys().collect::<Vec<_>>(), ["a"]);
}

/// Route `main`'s rollout step on `api`, or -1 when it cannot be read.
async fn step_of(api: &Api) -> i64 {
    let (status, json) = api.json("GET", "/api/v1/rollouts/main", None).await;
    if status != 200 {
        return -1;
    }
    json["step"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_rollout_and_survive_their_driver() {
    let etcd = Etcd::start().await;
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let cluster = format!(
        "cluster: {{etcd: {{endpoints: [\"http://{}\"], prefix: /lb-rollout/}}}}\n",
        etcd.client
    );
    // Steps of 10 s, judged on 5 requests: the test moves them on with its own traffic.
    let spec = rollout("", "")
        .replace("step_every: 1s", "step_every: 4s")
        .replace("min_requests: 20", "min_requests: 5");
    let yaml = format!("{cluster}{}", config(&a, &b, &format!("rollouts: [{spec}]")));
    let (mut one, mut two) = (Lb::start(&yaml), Lb::start(&yaml));
    let (api1, api2) = (Api::new(one.admin()), Api::new(two.admin()));
    let both_at = async |step: i64, api1: &Api, api2: &Api| {
        eventually(PATIENCE, async || {
            step_of(api1).await == step && step_of(api2).await == step
        })
        .await
    };
    assert!(both_at(1, &api1, &api2).await, "{}\n{}", one.log(), two.log());
    let driving = state(&api1).await["driving"] == true;
    assert_ne!(
        driving,
        state(&api2).await["driving"] == true,
        "exactly one instance drives"
    );
    // Both apply step 1 (10%): 100 requests through each.
    for lb in [&one, &two] {
        assert_eq!(send(lb, 100).await.get("b"), Some(&10));
    }
    // The driver dies at step 1 or 2; the other goes on from there.
    let (driver, survivor, survivor_api) = if driving {
        (&mut one, &two, &api2)
    } else {
        (&mut two, &one, &api1)
    };
    driver.proc.signal("KILL");
    assert!(driver.proc.wait_exit(PATIENCE).is_some(), "the driver did not die");
    let at_kill = step_of(survivor_api).await;
    let finished = eventually(PATIENCE, async || {
        send(survivor, 20).await;
        state(survivor_api).await["phase"] == "promoted"
    })
    .await;
    let s = state(survivor_api).await;
    assert!(finished, "{s}\n{}", survivor.log());
    let steps: Vec<u64> = s["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["event"] == "step" || t["event"] == "started" || t["event"] == "promoted")
        .filter_map(|t| t["share"].as_f64().map(|x| x as u64))
        .collect();
    assert_eq!(
        steps,
        [10, 50, 100, 100],
        "each step once, none skipped (killed at step {at_kill}): {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_both_instances_resumes_the_rollout() {
    let etcd = Etcd::start().await;
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let cluster = format!(
        "cluster: {{etcd: {{endpoints: [\"http://{}\"], prefix: /lb-resume/}}}}\n",
        etcd.client
    );
    let spec = rollout("", "").replace("step_every: 1s", "step_every: 1h");
    let yaml = format!("{cluster}{}", config(&a, &b, ""));
    let (one, two) = (Lb::start(&yaml), Lb::start(&yaml));
    let api1 = Api::new(one.admin());
    let body = serde_json::to_string(&serde_yaml::from_str::<Value>(&spec).expect("yaml")).expect("json");
    let (status, json) = api1.json("POST", "/api/v1/rollouts", Some(&body)).await;
    assert_eq!(status, 201, "{json}");
    act(&api1, "pause").await;
    // Paused at step 1: both instances stopped and started again find it there.
    let (one, two) = (one.restart(), two.restart());
    for lb in [&one, &two] {
        let api = Api::new(lb.admin());
        let resumed = eventually(PATIENCE, async || {
            let s = state(&api).await;
            s["phase"] == "steps" && s["step"] == 1 && s["paused"] == true
        })
        .await;
        assert!(resumed, "{}\n{}", state(&api).await, lb.log());
        assert_eq!(
            send(lb, 100).await.get("b"),
            Some(&10),
            "the step's split after the restart"
        );
    }
}

#[test]
fn a_bad_rollout_in_the_file_fails_lb_t_with_its_field() {
    let dir = common::TempDir::new("rollout-t");
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    for (rollout, says) in [
        (
            "{route: main, baseline: api, candidate: v2, steps: [50%, 10%]}",
            "rollouts[0].steps[1]",
        ),
        (
            "{route: main, baseline: api, candidate: v9, steps: [5%]}",
            "rollouts[0].candidate",
        ),
        (
            "{route: main, baseline: v2, candidate: api, steps: [5%]}",
            "rollouts[0].baseline",
        ),
        (
            "{route: main, baseline: api, candidate: v2, steps: [5%], shadow: {ignore: [$..x], compare: {body: json}}}",
            "rollouts[0].shadow.ignore[0]",
        ),
    ] {
        let yaml = config(&a, &b, &format!("rollouts: [{rollout}]"));
        let conf = common::write_config(&dir, &yaml, common::free_addr());
        let (status, _, err) = common::run_lb(&["-t", "-c", conf.to_str().expect("path")]);
        assert_eq!(status.code(), Some(1), "{rollout}: {err}");
        assert!(err.contains(says) && err.lines().count() == 1, "{rollout}: {err}");
    }
}
