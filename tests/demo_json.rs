//! lb-demo's `/json` route, which rollouts' tests use as baseline and candidate: the documented
//! JSON document (version from `--api-version`, the backend's name, a fresh timestamp), under
//! `--fail-rate` and `--delay` like every route; and two demos' answers under the shadow
//! comparison of issue 22 (`lb::request::shadow_compare`). Talks to lb-demo alone: no lb, so
//! one pass covers both request loops.

mod common;

use common::{get, Demo, Resp};
use lb::request::shadow_compare::{Answer, BodyMode, Compare, Kind};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    since.as_millis() as u64
}

async fn get_json(demo: &Demo) -> Resp {
    get(demo.addr, "/json").await.expect("GET /json")
}

fn answer(resp: &Resp) -> Answer {
    Answer {
        status: resp.status,
        headers: resp.headers.clone(),
        body: resp.body.clone(),
        body_whole: true,
    }
}

#[tokio::test]
async fn json_answers_the_documented_document() {
    let demo = Demo::start_with("a", &["--api-version", "2.1-\"beta\""]);
    let before = now_ms();
    let resp = get_json(&demo).await;
    let after = now_ms();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), "application/json");
    assert_eq!(resp.backend(), "a");
    let mut body: Value = serde_json::from_slice(&resp.body).expect("a JSON body");
    let timestamp = body["timestamp"].as_u64().expect("a timestamp in ms");
    assert!(
        (before..=after).contains(&timestamp),
        "{before} <= {timestamp} <= {after}"
    );
    body.as_object_mut().expect("an object").remove("timestamp");
    let expected = json!({
        "service": "demo", "version": "2.1-\"beta\"", "backend": "a",
        "items": [{"id": 1, "price": 10}, {"id": 2, "price": 20}],
    });
    assert_eq!(body, expected);
    let default = Demo::start("b");
    let body: Value = serde_json::from_slice(&get_json(&default).await.body).expect("JSON");
    assert_eq!(body["version"], "1");
}

#[tokio::test]
async fn json_honours_fail_rate_and_delay() {
    let failing = Demo::start_with("f", &["--fail-rate", "1"]);
    let resp = get_json(&failing).await;
    assert_eq!((resp.status, resp.text()), (500, "f failed on purpose\n".to_string()));
    let slow = Demo::start_with("s", &["--delay", "300ms"]);
    let start = Instant::now();
    assert_eq!(get_json(&slow).await.status, 200);
    // A lower bound only: a busy machine makes it longer, never shorter.
    assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
}

#[tokio::test]
async fn two_demos_agree_on_json_except_where_they_should_not() {
    let (baseline, same, newer) = (
        Demo::start("a"),
        Demo::start("b"),
        Demo::start_with("c", &["--api-version", "2"]),
    );
    let ignore = ["$.timestamp".to_string(), "$.backend".to_string()];
    let compare = Compare::new(true, &["Content-Type".to_string()], BodyMode::Json, &ignore).expect("compare");
    let base = answer(&get_json(&baseline).await);
    assert_eq!(compare.diff(&base, &answer(&get_json(&same).await)), None);
    let diff = compare
        .diff(&base, &answer(&get_json(&newer).await))
        .expect("the version differs");
    assert_eq!((diff.kind, diff.paths), (Kind::Body, vec!["$.version".to_string()]));
    // Without the ignore list the backend's name and the timestamp differ too.
    let strict = Compare::new(true, &[], BodyMode::Json, &[]).expect("compare");
    let diff = strict.diff(&base, &answer(&get_json(&same).await)).expect("differs");
    assert!(diff.paths.contains(&"$.backend".to_string()), "{diff:?}");
}
