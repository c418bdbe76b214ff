//! The dashboard's Rollouts card in a real headless Chromium (Debian's, through ChromeDriver),
//! lb-demo backends as baseline (`a`), a like candidate (`b`) and one whose JSON differs (`c`):
//! the card is hidden while there is no rollout and shows one created through the API with its
//! pools, phase, step, share and the gates' figures of its window as the API has them; Pause
//! and Resume change it as the API sees it; Abort asks first (Cancel sends nothing) and then
//! ends it with its reason; a rollout stopped in its shadow phase shows its phase, reason,
//! comparisons and the differing JSON path. With an admin token, so every action must carry it.
//! And the OpenAPI document describes the rollouts' calls and every field of a view as served.
//! Run on both request loops (`LB_PROXY_PATH=pingora` for Pingora's).

mod common;

use common::admin::Api;
use common::webdriver::Browser;
use common::{eventually, tally, Demo, Lb, PATIENCE};
use serde_json::Value;
use std::collections::BTreeSet;

const TOKEN: &str = "rollout-dash-token";
const MAIN: &str = "#rollouts tr[data-route=\"main\"]";

/// Pools `api` (a), `v2` (b) and `v3` (c); route `json` (`/json`) and route `main` (the rest),
/// both to `api`; the admin API with a token.
fn config(a: &Demo, b: &Demo, c: &Demo) -> String {
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\", token: {TOKEN}, state_file: \"{{dir}}/state.json\"}}
upstreams:
  api: {{backends: [{}]}}
  v2: {{backends: [{}]}}
  v3: {{backends: [{}]}}
routes:
  - {{name: json, path_prefix: /json, upstream: api}}
  - {{name: main, upstream: api}}
",
        a.yaml(),
        b.yaml(),
        c.yaml()
    )
}

/// Route `route`'s rollout as the API shows it.
async fn rollout(api: &Api, route: &str) -> Value {
    let (status, json) = api.json("GET", &format!("/api/v1/rollouts/{route}"), None).await;
    assert_eq!(status, 200, "{json}");
    json
}

/// `POST /api/v1/rollouts` with `body`, expected to start it.
async fn create(api: &Api, body: &str) {
    let (status, json) = api.json("POST", "/api/v1/rollouts", Some(body)).await;
    assert_eq!(status, 201, "{body}: {json}");
}

/// The text of the first element matching `css` (null when there is none).
async fn text(browser: &Browser, css: &str) -> Value {
    let script = format!("const e = document.querySelector('{css}'); return e ? e.textContent : null");
    browser.script(&script).await
}

/// Whether, within the patience, the element `css` shows `want`.
async fn shows(browser: &Browser, css: &str, want: &str) -> bool {
    eventually(PATIENCE, async || text(browser, css).await == want).await
}

/// Clicks the first element matching `css`.
async fn click(browser: &Browser, css: &str) {
    browser.click(&browser.find(css).await).await;
}

/// The rollout actions the page POSTed since the browser's performance log was last read.
async fn posted(browser: &Browser) -> Vec<String> {
    browser
        .log("performance")
        .await
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e["message"].as_str()?).ok())
        .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
        .map(|m| m["message"]["params"]["request"].clone())
        .filter(|r| r["method"] == "POST")
        .filter_map(|r| Some(r["url"].as_str()?.split("/api/v1/rollouts/").nth(1)?.to_string()))
        .collect()
}

/// The baseline `a`, a candidate `b` that answers like it, one `c` whose JSON differs, and lb
/// over them.
fn start() -> ([Demo; 3], Lb) {
    let demos = [
        Demo::start("a"),
        Demo::start("b"),
        Demo::start_with("c", &["--api-version", "2"]),
    ];
    let lb = Lb::start(&config(&demos[0], &demos[1], &demos[2]));
    (demos, lb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollouts_card_shows_each_rollout_and_drives_it() {
    let (_demos, lb) = start();
    let api = Api::with_token(lb.admin(), TOKEN);
    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/", lb.admin())).await;
    browser.type_into(&browser.find("#token-input").await, TOKEN).await;
    click(&browser, "#token-submit").await;
    // No rollout yet: once the page has polled, the card is hidden.
    let polled = eventually(PATIENCE, async || {
        text(&browser, "#status")
            .await
            .as_str()
            .is_some_and(|t| t.starts_with("updated"))
    })
    .await;
    assert!(polled, "the page never polled: {}", text(&browser, "#status").await);
    let hidden = "return document.getElementById('rollouts-card').classList.contains('hidden')";
    assert_eq!(browser.script(hidden).await, true, "the card shows without rollouts");

    // A rollout through the API, a step an hour: it stays at its first step, 10%.
    create(
        &api,
        r#"{"route": "main", "baseline": "api", "candidate": "v2", "steps": ["10%", "50%", "100%"], "step_every": "1h"}"#,
    )
    .await;
    let counts = tally(&lb, "/", 40).await;
    assert_eq!(counts.get("b"), Some(&4), "10% of 40 to the candidate: {counts:?}");
    browser
        .find(&format!("{MAIN}[data-phase=\"steps\"][data-share=\"10\"]"))
        .await;
    assert_eq!(browser.script(hidden).await, false);
    assert_eq!(text(&browser, &format!("{MAIN} .pools")).await, "api → v2");
    assert_eq!(text(&browser, &format!("{MAIN} .phase-name")).await, "steps");
    assert_eq!(text(&browser, &format!("{MAIN} .step")).await, "1 of 3");
    assert_eq!(text(&browser, &format!("{MAIN} .share")).await, "10%");
    // The gates' figures, side by side, as the API has them (no traffic meanwhile).
    let window = rollout(&api, "main").await["window"].clone();
    assert_eq!(window["candidate"]["requests"], 4, "{window}");
    for (side, figure, want) in [
        ("baseline", "requests", window["baseline"]["requests"].to_string()),
        ("candidate", "requests", "4".to_string()),
        ("baseline", "errors", "0.00%".to_string()),
        ("candidate", "errors", "0.00%".to_string()),
    ] {
        let css = format!("{MAIN} [data-side=\"{side}\"] [data-figure=\"{figure}\"]");
        assert!(
            shows(&browser, &css, &want).await,
            "{css}: {} ≠ {want}",
            text(&browser, &css).await
        );
    }
    let p99 = text(
        &browser,
        &format!("{MAIN} [data-side=\"candidate\"] [data-figure=\"p99\"]"),
    )
    .await;
    assert!(p99.as_str().is_some_and(|t| t.ends_with(" ms")), "{p99}");
    assert_eq!(text(&browser, &format!("{MAIN} .shadow")).await, "–");

    // Pause: the API says so, and so does the page, which now offers Resume.
    browser.log("performance").await;
    click(&browser, &format!("{MAIN} button[data-action=\"pause\"]")).await;
    let paused = eventually(PATIENCE, async || rollout(&api, "main").await["paused"] == true).await;
    assert!(paused, "the click did not pause it: {}", rollout(&api, "main").await);
    browser
        .find(&format!("{MAIN}[data-paused=\"true\"] .badge.paused"))
        .await;
    assert_eq!(text(&browser, &format!("{MAIN} .badge.paused")).await, "paused");
    assert_eq!(
        text(&browser, "#rollouts-message").await,
        "rollout of route main paused"
    );
    // Abort asks first; Cancel sends nothing.
    click(&browser, &format!("{MAIN} button[data-action=\"abort\"]")).await;
    let question = browser.dialog_text().await;
    assert!(question.starts_with("Abort the rollout of route main?"), "{question}");
    browser.answer_dialog(false).await;
    click(&browser, &format!("{MAIN} button[data-action=\"resume\"]")).await;
    let resumed = eventually(PATIENCE, async || rollout(&api, "main").await["paused"] == false).await;
    assert!(resumed, "the click did not resume it: {}", rollout(&api, "main").await);
    browser
        .find(&format!("{MAIN}[data-paused=\"false\"][data-phase=\"steps\"]"))
        .await;
    assert_eq!(posted(&browser).await, ["main/pause", "main/resume"]);

    // Abort, confirmed: it ends, with its reason, and no button is left.
    click(&browser, &format!("{MAIN} button[data-action=\"abort\"]")).await;
    browser.dialog_text().await;
    browser.answer_dialog(true).await;
    let aborted = eventually(PATIENCE, async || rollout(&api, "main").await["phase"] == "aborted").await;
    assert!(aborted, "the click did not abort it: {}", rollout(&api, "main").await);
    browser.find(&format!("{MAIN}[data-phase=\"aborted\"]")).await;
    let reason = "#rollouts tr[data-detail=\"main\"] .reason";
    assert!(
        shows(&browser, reason, "aborted by the operator").await,
        "{}",
        text(&browser, reason).await
    );
    let buttons = browser
        .script(&format!("return document.querySelectorAll('{MAIN} button').length"))
        .await;
    assert_eq!(buttons, 0, "an ended rollout offers actions");

    // A candidate whose JSON differs is stopped in its shadow phase: the card says why.
    create(
        &api,
        r#"{"route": "json", "baseline": "api", "candidate": "v3", "steps": ["50%"], "step_every": "1h",
            "shadow": {"duration": "1h", "compare": {"status": true, "body": "json"}, "ignore": ["$.timestamp", "$.backend"]},
            "gates": {"min_requests": 10}}"#,
    )
    .await;
    let rolled_back = eventually(PATIENCE, async || {
        tally(&lb, "/json", 5).await;
        rollout(&api, "json").await["phase"] == "rolled_back"
    })
    .await;
    let view = rollout(&api, "json").await;
    assert!(rolled_back, "not rolled back: {view}");
    let row = "#rollouts tr[data-route=\"json\"]";
    browser.find(&format!("{row}[data-phase=\"rolled_back\"]")).await;
    assert_eq!(text(&browser, &format!("{row} .phase-name")).await, "rolled back");
    let reason = "#rollouts tr[data-detail=\"json\"] .reason";
    let why = view["reason"].as_str().unwrap_or_default();
    assert!(why.starts_with("shadow: "), "{view}");
    assert!(shows(&browser, reason, why).await, "{}", text(&browser, reason).await);
    // Copies still in flight at the rollback may add comparisons: the page follows the API.
    let shadow = format!("{row} .shadow");
    let same = eventually(PATIENCE, async || {
        let n = &rollout(&api, "json").await["shadow"]["compared"];
        text(&browser, &shadow).await == format!("{n} compared, {n} differed (body {n})").as_str()
    })
    .await;
    assert!(
        same,
        "{}: {}",
        text(&browser, &shadow).await,
        rollout(&api, "json").await["shadow"]
    );
    let differs = "#rollouts tr[data-detail=\"json\"] .divergences li[data-kind=\"body\"] .differs";
    assert_eq!(text(&browser, differs).await, "$.version");
    let order = browser
        .script("return [...document.querySelectorAll('#rollouts tr[data-route]')].map(r => r.dataset.route + ' ' + r.dataset.phase)")
        .await;
    assert_eq!(order, serde_json::json!(["json rolled_back", "main aborted"]));

    let console = browser.log("browser").await;
    let errors: Vec<_> = console.iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// The names of `v`'s fields.
fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// The properties of schema `name` of the OpenAPI document `doc`, or of its property `field`'s
/// inline schema.
fn documented(doc: &Value, name: &str, field: Option<&str>) -> BTreeSet<String> {
    let schema = &doc["components"]["schemas"][name];
    let schema = field.map_or(schema, |f| &schema["properties"][f]);
    keys(&schema["properties"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_rollouts_as_served() {
    let (_demos, lb) = start();
    let api = Api::with_token(lb.admin(), TOKEN);
    // A shadow phase that differences do not end, so that every part of the view has content.
    create(
        &api,
        r#"{"route": "json", "baseline": "api", "candidate": "v3", "steps": ["50%"], "step_every": "1h",
            "split_by": {"cookie": "lb_rollout"},
            "shadow": {"duration": "1h", "max_divergence": "100%", "compare": {"body": "json"}, "ignore": ["$.timestamp"]}}"#,
    )
    .await;
    let diverged = eventually(PATIENCE, async || {
        tally(&lb, "/json", 5).await;
        rollout(&api, "json").await["divergences"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    })
    .await;
    let view = rollout(&api, "json").await;
    assert!(diverged, "no divergence: {view}");
    let (status, doc) = api.json("GET", "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200, "{doc}");
    for (method, path) in [
        ("get", "/api/v1/rollouts"),
        ("post", "/api/v1/rollouts"),
        ("get", "/api/v1/rollouts/{route}"),
        ("post", "/api/v1/rollouts/{route}/pause"),
        ("post", "/api/v1/rollouts/{route}/resume"),
        ("post", "/api/v1/rollouts/{route}/abort"),
        ("post", "/api/v1/rollouts/{route}/promote"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    assert_eq!(keys(&view), documented(&doc, "RolloutView", None), "{view}");
    for field in ["window", "shadow"] {
        assert_eq!(
            keys(&view[field]),
            documented(&doc, "RolloutView", Some(field)),
            "{field}"
        );
    }
    let pairs = [
        (&view["window"]["baseline"], "RolloutWindowSide"),
        (&view["divergences"][0], "Divergence"),
        (&view["history"][0], "RolloutTransition"),
    ];
    for (served, schema) in pairs {
        assert_eq!(keys(served), documented(&doc, schema, None), "{schema}: {served}");
    }
    // The rollout as written: what a view shows of it is what a POST takes.
    for (served, schema) in [
        (&view["spec"], "Rollout"),
        (&view["spec"]["shadow"], "RolloutShadow"),
        (&view["spec"]["gates"], "RolloutGates"),
    ] {
        let missing: Vec<_> = keys(served)
            .difference(&documented(&doc, schema, None))
            .cloned()
            .collect();
        assert!(missing.is_empty(), "{schema} lacks {missing:?}");
    }
}
