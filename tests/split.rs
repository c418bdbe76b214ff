//! A route's split between pools through the real binary: 80/20 over 1,000 requests within
//! ±5%; `split_by` (the cookie lb sets, a hash key) keeps a client on its side; a side whose
//! pool has no usable backend is passed over without an error; `PATCH /api/v1/routes/{name}`
//! changes the weights for the next request, refuses bad input with a 4xx that says why, and
//! the change survives a restart (state file) and holds on a second instance (etcd); the
//! dashboard shows the weights. Run on both request loops (`LB_PROXY_PATH=pingora` for
//! Pingora's).

mod common;

use common::admin::Api;
use common::client::{empty, request, Client};
use common::etcd::Etcd;
use common::webdriver::Browser;
use common::{eventually, tally, Demo, Lb, PATIENCE};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Pools `api` (backend `a`) and `canary` (backend `c`, health-checked every 100 ms), one
/// route `main` splitting between them with `split` and then `extra` (e.g. a `split_by`), and a
/// plain route `/plain/` to `api`; `admin` is the rest of the `admin:` section.
fn config(a: &Demo, c: &str, split: &str, extra: &str, admin: &str) -> String {
    format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\"{admin}}}
upstreams:
  api: {{backends: [{}]}}
  canary:
    backends: [{{address: \"{c}\"}}]
    health_check: {{path: /healthz, interval: 100ms, timeout: 500ms}}
routes:
  - {{name: plain, path_prefix: /plain/, upstream: api}}
  - name: main
    split: {split}
{extra}",
        a.yaml()
    )
}

const EIGHTY_TWENTY: &str = "[{upstream: api, weight: 80}, {upstream: canary, weight: 20}]";
const HALVES: &str = "[{upstream: api, weight: 1}, {upstream: canary, weight: 1}]";

/// One GET of `path` on `client` with the request headers `headers`: (backend, Set-Cookie).
async fn get_with(client: &mut Client, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    let mut req = request("GET", path, empty());
    for (name, value) in headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("header name");
        req.headers_mut().insert(name, value.parse().expect("header value"));
    }
    let resp = client.send(req).await.expect("request");
    assert_eq!(resp.status, 200, "{}", resp.text());
    (resp.backend(), resp.header("set-cookie"))
}

/// Route `name` as instance `api` shows it.
async fn route(api: &Api, name: &str) -> Value {
    let (status, json) = api.json("GET", &format!("/api/v1/routes/{name}"), None).await;
    assert_eq!(status, 200, "{json}");
    json
}

/// `PATCH /api/v1/routes/{name}` with `body`: status and JSON.
async fn patch(api: &Api, name: &str, body: &str) -> (u16, Value) {
    api.json("PATCH", &format!("/api/v1/routes/{name}"), Some(body)).await
}

/// Whether all of `n` requests to `lb` go to backend `only`.
async fn all_to(lb: &Lb, n: usize, only: &str) -> bool {
    let counts = tally(lb, "/", n).await;
    counts.keys().collect::<Vec<_>>() == [only]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eighty_twenty_over_a_thousand_requests() {
    let (a, c) = (Demo::start("a"), Demo::start("c"));
    let lb = Lb::start(&config(&a, &c.addr.to_string(), EIGHTY_TWENTY, "", ""));
    let counts = tally(&lb, "/", 1000).await;
    let api = counts.get("a").copied().unwrap_or(0);
    assert_eq!(api + counts.get("c").copied().unwrap_or(0), 1000, "{counts:?}");
    assert!((750..=850).contains(&api), "80% ± 5% expected: {counts:?}");
    // Without split_by no cookie is set, and other routes are not split.
    let mut client = Client::connect(lb.addr).await.expect("connect");
    assert_eq!(get_with(&mut client, "/", &[]).await.1, "");
    assert!(all_to_path(&lb, "/plain/x", "a").await);

    let (status, routes) = Api::new(lb.admin()).json("GET", "/api/v1/routes", None).await;
    assert_eq!(status, 200, "{routes}");
    let main = &routes["routes"][1];
    assert_eq!(main["name"], "main", "{routes}");
    assert_eq!(main["split"][0]["weight"], 80, "{routes}");
    assert_eq!(main["split"][1]["share"], 20.0, "{routes}");
    assert_eq!(routes["routes"][0]["upstream"], "api", "{routes}");
    let (_, doc) = Api::new(lb.admin()).json("GET", "/api/v1/openapi.json", None).await;
    for path in ["/api/v1/routes", "/api/v1/routes/{route}"] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    assert!(doc["paths"]["/api/v1/routes/{route}"]["patch"].is_object());
}

/// Whether 20 requests of `path` all go to backend `only`.
async fn all_to_path(lb: &Lb, path: &str, only: &str) -> bool {
    let counts = tally(lb, path, 20).await;
    counts.keys().collect::<Vec<_>>() == [only]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_split_cookie_keeps_each_client_on_its_side() {
    let (a, c) = (Demo::start("a"), Demo::start("c"));
    let by = "    split_by: {cookie: lb_split}\n";
    let lb = Lb::start(&config(&a, &c.addr.to_string(), HALVES, by, ""));
    let mut sides = BTreeMap::new();
    for _ in 0..10 {
        // A new client: no cookie, so a side is chosen and the cookie set.
        let mut client = Client::connect(lb.addr).await.expect("connect");
        let (first, set) = get_with(&mut client, "/", &[]).await;
        assert!(set.starts_with("lb_split=") && set.contains("Max-Age=86400"), "{set}");
        let cookie = set.split(';').next().unwrap_or_default().to_string();
        assert!(
            !cookie.contains("api") && !cookie.contains("canary"),
            "opaque: {cookie}"
        );
        for _ in 0..10 {
            let (backend, set) = get_with(&mut client, "/", &[("cookie", &cookie)]).await;
            assert_eq!((backend.as_str(), set.as_str()), (first.as_str(), ""), "{cookie}");
        }
        *sides.entry(first).or_insert(0) += 1;
    }
    assert_eq!(sides.len(), 2, "new clients are spread over both sides: {sides:?}");

    // A cookie lb did not set is replaced.
    let mut client = Client::connect(lb.addr).await.expect("connect");
    let (_, set) = get_with(&mut client, "/", &[("cookie", "lb_split=forged")]).await;
    assert!(set.starts_with("lb_split="), "{set}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_key_keeps_each_user_on_its_side() {
    let (a, c) = (Demo::start("a"), Demo::start("c"));
    let by = "    split_by: {header: X-User}\n";
    let lb = Lb::start(&config(&a, &c.addr.to_string(), HALVES, by, ""));
    let mut client = Client::connect(lb.addr).await.expect("connect");
    let mut sides = BTreeMap::new();
    for user in 0..20 {
        let user = format!("user-{user}");
        let (first, set) = get_with(&mut client, "/", &[("x-user", &user)]).await;
        assert_eq!(set, "", "no cookie with a hash key");
        for _ in 0..5 {
            assert_eq!(
                get_with(&mut client, "/", &[("x-user", &user)]).await.0,
                first,
                "{user}"
            );
        }
        *sides.entry(first).or_insert(0) += 1;
    }
    assert_eq!(sides.len(), 2, "users are spread over both sides: {sides:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_whose_pool_is_down_is_passed_over() {
    let (a, mut c) = (Demo::start("a"), Demo::start("c"));
    let by = "    split_by: {cookie: lb_split}\n";
    let lb = Lb::start(&config(&a, &c.addr.to_string(), HALVES, by, ""));
    let api = Api::new(lb.admin());
    // A client kept on the canary side.
    let mut client = Client::connect(lb.addr).await.expect("connect");
    let mut canary_cookie = None;
    for _ in 0..10 {
        let (backend, set) = get_with(&mut client, "/", &[]).await;
        if backend == "c" {
            canary_cookie = Some(set.split(';').next().unwrap_or_default().to_string());
            break;
        }
    }
    let canary_cookie = canary_cookie.expect("a client on the canary side");

    // The canary's only backend dies; once its health check says so, every request is 200
    // from the api side, the kept client included (with a new cookie).
    c.kill();
    let down = eventually(PATIENCE, async || {
        route(&api, "main").await["split"][1]["usable"] == false
    })
    .await;
    assert!(down, "{}", lb.log());
    assert!(all_to(&lb, 100, "a").await);
    let (backend, set) = get_with(&mut client, "/", &[("cookie", &canary_cookie)]).await;
    assert_eq!(backend, "a");
    assert!(
        set.starts_with("lb_split=") && !set.starts_with(&canary_cookie),
        "{set}"
    );

    // It comes back: both sides serve again.
    c.restart();
    let back = eventually(PATIENCE, async || {
        route(&api, "main").await["split"][1]["usable"] == true
    })
    .await;
    assert!(back, "{}", lb.log());
    let counts = tally(&lb, "/", 20).await;
    assert_eq!(counts.values().collect::<Vec<_>>(), [&10, &10], "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_holds_from_the_next_request_and_across_a_restart() {
    let (a, c) = (Demo::start("a"), Demo::start("c"));
    let state = ", state_file: \"{dir}/state.json\"";
    let lb = Lb::start(&config(&a, &c.addr.to_string(), EIGHTY_TWENTY, "", state));
    let api = Api::new(lb.admin());

    let (status, json) = patch(&api, "main", r#"{"split": [{"upstream": "api", "weight": 0}]}"#).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        (json["result"].as_str(), json["persisted"].as_bool()),
        (Some("changed"), Some(true))
    );
    assert_eq!(json["route"]["split"][0]["weight"], 0, "{json}");
    assert_eq!(json["route"]["split"][0]["config_weight"], 80, "{json}");
    assert!(all_to(&lb, 50, "c").await, "the next request goes by the new weights");

    // Bad input: a 4xx saying why, and nothing changed.
    for (name, body, status, words) in [
        (
            "main",
            r#"{"split": [{"upstream": "canary", "weight": 0}]}"#,
            400,
            "add up to 0",
        ),
        (
            "main",
            r#"{"split": [{"upstream": "nowhere", "weight": 1}]}"#,
            400,
            "not one of them",
        ),
        (
            "main",
            r#"{"split": [{"upstream": "api", "weight": -1}]}"#,
            400,
            "invalid value",
        ),
        ("main", r#"{"split": [{"upstream": "api"}]}"#, 400, "missing field"),
        ("main", r#"{"weights": []}"#, 400, "unknown field"),
        ("main", "", 400, "needs a JSON body"),
        (
            "plain",
            r#"{"split": [{"upstream": "api", "weight": 1}]}"#,
            400,
            "no split",
        ),
        (
            "nothing",
            r#"{"split": [{"upstream": "api", "weight": 1}]}"#,
            404,
            "no route",
        ),
    ] {
        let (got, json) = patch(&api, name, body).await;
        assert_eq!(got, status, "{body}: {json}");
        assert!(
            json["error"].as_str().unwrap_or_default().contains(words),
            "{body}: {json}"
        );
    }
    let (status, _) = api.json("DELETE", "/api/v1/routes/main", None).await;
    assert_eq!(status, 405);
    assert!(all_to(&lb, 20, "c").await);

    // Restarted: the state file keeps the change.
    let lb = lb.restart();
    let api = Api::new(lb.admin());
    assert_eq!(route(&api, "main").await["split"][0]["weight"], 0);
    assert!(all_to(&lb, 20, "c").await, "{}", lb.log());

    // Reloaded with other weights in the file: the runtime weight still wins over the file's.
    let file = lb.dir.path("lb.yaml");
    let text = std::fs::read_to_string(&file).expect("config");
    std::fs::write(&file, text.replace("weight: 80", "weight: 60")).expect("config");
    let (status, json) = api.json("POST", "/api/v1/reload", None).await;
    assert_eq!(status, 200, "{json}");
    let main = route(&api, "main").await;
    assert_eq!(
        (
            main["split"][0]["weight"].as_u64(),
            main["split"][0]["config_weight"].as_u64()
        ),
        (Some(0), Some(60))
    );
    assert!(all_to(&lb, 20, "c").await, "{}", lb.log());

    // Back to the file's weights: the change is gone from the state file.
    let (status, json) = patch(&api, "main", r#"{"split": [{"upstream": "api", "weight": 60}]}"#).await;
    assert_eq!(status, 200, "{json}");
    let counts = tally(&lb, "/", 80).await;
    assert_eq!(counts.get("a"), Some(&60), "60/20 over 80 requests: {counts:?}");
    let kept = std::fs::read_to_string(lb.dir.path("state.json")).unwrap_or_default();
    assert!(!kept.contains("\"routes\""), "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_through_one_instance_holds_on_another_through_etcd() {
    let etcd = Etcd::start().await;
    let (a, c) = (Demo::start("a"), Demo::start("c"));
    let cluster = format!(
        "cluster: {{etcd: {{endpoints: [\"http://{}\"], prefix: /lb-split/}}}}\n",
        etcd.client
    );
    let yaml = format!("{cluster}{}", config(&a, &c.addr.to_string(), EIGHTY_TWENTY, "", ""));
    let (one, two) = (Lb::start(&yaml), Lb::start(&yaml));
    let (api1, api2) = (Api::new(one.admin()), Api::new(two.admin()));

    let (status, json) = patch(&api1, "main", r#"{"split": [{"upstream": "api", "weight": 0}]}"#).await;
    assert_eq!((status, json["persisted"].as_bool()), (200, Some(true)), "{json}");
    assert!(all_to(&one, 20, "c").await);
    let seen = eventually(Duration::from_secs(5), async || {
        route(&api2, "main").await["split"][0]["weight"] == 0
    })
    .await;
    assert!(seen, "instance 2 did not get the change\n{}", two.log());
    assert!(all_to(&two, 20, "c").await);

    // Changed back through instance 2: instance 1 follows.
    let (status, json) = patch(&api2, "main", r#"{"split": [{"upstream": "api", "weight": 80}]}"#).await;
    assert_eq!(status, 200, "{json}");
    let back = eventually(Duration::from_secs(5), async || {
        route(&api1, "main").await["split"][0]["weight"] == 80
    })
    .await;
    assert!(back, "{}", one.log());
    assert_eq!(tally(&one, "/", 100).await.get("a"), Some(&80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_weights_in_force() {
    let (a, c) = (Demo::start("a"), Demo::start("c"));
    let lb = Lb::start(&config(&a, &c.addr.to_string(), EIGHTY_TWENTY, "", ""));
    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/", lb.admin())).await;
    let side = |weight: u32| {
        format!("#splits tr[data-route=\"main\"] .side[data-upstream=\"canary\"][data-weight=\"{weight}\"]")
    };
    browser.find(&side(20)).await;
    let text = browser
        .script(&format!("return document.querySelector('{}').textContent", side(20)))
        .await;
    assert_eq!(text, "canary 20 (20%)");
    // Changed through the API: the page follows within its next poll.
    let (status, json) = patch(
        &Api::new(lb.admin()),
        "main",
        r#"{"split": [{"upstream": "canary", "weight": 5}]}"#,
    )
    .await;
    assert_eq!(status, 200, "{json}");
    browser.find(&side(5)).await;
}
