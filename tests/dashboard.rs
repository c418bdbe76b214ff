//! The dashboard in a real headless Chromium (Debian's, driven through ChromeDriver): it asks
//! for the token once; on its first load its charts hold the traffic lb saw before the page
//! opened, and the overview shows req/s, the 5xx share, p50/p99 and the pool with a problem
//! first; it lists events; a click on "Drain" changes the backend's state as the API sees it;
//! and the page logs no console error and requests nothing outside lb's admin listener.

mod common;

use common::admin::Api;
use common::webdriver::Browser;
use common::{eventually, get, Demo, Lb, PATIENCE};
use serde_json::Value;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Intervals of lb's history in which pool `pool` served requests.
async fn busy_samples(api: &Api, pool: &str) -> usize {
    let (_, history) = api.json("GET", "/api/v1/history", None).await;
    let pools = history["pools"].as_array().cloned().unwrap_or_default();
    let Some(p) = pools.into_iter().find(|p| p["name"] == pool) else {
        return 0;
    };
    let rates = p["requests_per_s"].as_array().cloned().unwrap_or_default();
    rates.iter().filter(|r| r.as_f64().is_some_and(|r| r > 0.0)).count()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn number(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_backends_and_drains_one_with_a_click() {
    let (a, b, c) = (Demo::start("a"), Demo::start("b"), Demo::start("c"));
    let dead = common::free_addr();
    // web takes the traffic, alpha none, zeta's only backend is dead: zeta is listed first,
    // alpha (first by name) last.
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\", token: dash-token-1}}
routes:
  - {{path_prefix: /z/, upstream: zeta}}
  - {{path_prefix: /, upstream: web}}
upstreams:
  alpha:
    backends: [{}]
  web:
    backends: [{}, {}]
    health_check: {{path: /healthz, interval: 500ms}}
  zeta:
    backends: [{{address: \"{dead}\"}}]
    health_check: {{path: /healthz, interval: 500ms}}
",
        c.yaml(),
        a.yaml(),
        b.yaml()
    ));
    let origin = format!("http://{}", lb.admin());
    let api = Api::with_token(lb.admin(), "dash-token-1");
    // Traffic for a few seconds before the page opens: until lb's history holds three
    // intervals of it. And a few requests zeta can only refuse.
    let traffic = Instant::now();
    let busy = eventually(PATIENCE, async || {
        common::tally(&lb, "/", 5).await;
        busy_samples(&api, "web").await >= 3
    })
    .await;
    assert!(busy, "lb's history never held 3 busy intervals");
    for _ in 0..3 {
        let status = get(lb.addr, "/z/").await.expect("request to zeta").status;
        assert!(status >= 500, "zeta answered {status}");
    }
    eprintln!("traffic before the page: {:?}", traffic.elapsed());
    let opened = unix_ms();

    let browser = Browser::start().await;
    // Forget what the browser's own start page loaded: from here on, every request is the
    // dashboard's.
    browser.log("performance").await;
    browser.goto(&format!("{origin}/")).await;
    // With a token configured, the page asks for it (once: it is kept for the tab).
    let input = browser.find("#token-input").await;
    browser.type_into(&input, "dash-token-1").await;
    browser.click(&browser.find("#token-submit").await).await;

    let row = format!("tr[data-backend=\"{}\"]", a.addr);
    browser.find(&format!("tr[data-backend=\"{}\"]", b.addr)).await;

    // On first load, the chart already holds the samples from before the page opened.
    let rate = "section[data-pool=\"web\"] canvas[data-chart=\"rate\"]";
    let data = |key: &'static str| {
        let script = format!("return document.querySelector('{rate}').dataset.{key} || ''");
        let browser = &browser;
        async move { browser.script(&script).await }
    };
    let drawn = eventually(PATIENCE, async || data("samples").await != "").await;
    assert!(drawn, "the rate chart was never drawn");
    let (samples, oldest, peak) = (
        number(&data("samples").await),
        number(&data("oldest").await),
        number(&data("peak").await),
    );
    assert!(samples >= 3.0, "only {samples} samples drawn on first load");
    assert!(
        oldest < opened as f64,
        "the oldest point drawn ({oldest}) is not from before the page opened ({opened})"
    );
    assert!(peak > 0.0, "the chart shows no traffic: peak {peak}");

    // The overview: figures of the last minute, and the pool with a problem first.
    let figure = |name: &str| {
        let script = format!(
            "const f = document.querySelector('#overview [data-figure=\"{name}\"]'); return [f.textContent, f.dataset.value]"
        );
        let browser = &browser;
        async move { browser.script(&script).await }
    };
    let shown = eventually(PATIENCE, async || figure("p99_ms").await[1] != "").await;
    assert!(shown, "the overview never showed a p99");
    let (req, errors) = (figure("requests_per_s").await, figure("error_ratio").await);
    assert!(
        number(&req[1]) > 0.0 && req[0].as_str().is_some_and(|t| t.ends_with(" req/s")),
        "{req}"
    );
    assert!(
        number(&errors[1]) > 0.0 && errors[0].as_str().is_some_and(|t| t.ends_with('%')),
        "{errors}"
    );
    for name in ["p50_ms", "p99_ms"] {
        let f = figure(name).await;
        assert!(
            number(&f[1]) > 0.0 && f[0].as_str().is_some_and(|t| t.ends_with(" ms")),
            "{name}: {f}"
        );
    }
    let order = browser
        .script("return [...document.querySelectorAll('#overview-pools tr')].map(r => r.dataset.pool + ' ' + r.dataset.status)")
        .await;
    assert_eq!(order, serde_json::json!(["zeta failing", "web serving", "alpha idle"]));
    let cards = browser
        .script("return [...document.querySelectorAll('#pools > section')].map(s => s.dataset.pool)")
        .await;
    assert_eq!(
        cards,
        serde_json::json!(["zeta", "web", "alpha"]),
        "the cards are not in the overview's order"
    );
    // A backend that served nothing shows no latency; one that did, in ms.
    let latency = |addr: std::net::SocketAddr| {
        let script =
            format!("return document.querySelector('tr[data-backend=\"{addr}\"] td:nth-child(11)').textContent");
        let browser = &browser;
        async move { browser.script(&script).await }
    };
    assert_eq!(latency(c.addr).await, "–");
    let a_latency = latency(a.addr).await;
    assert!(a_latency.as_str().is_some_and(|t| t.ends_with(" ms")), "{a_latency}");
    // The event list has zeta's dead backend.
    let dead_listed = browser
        .script(&format!(
            "return [...document.querySelectorAll('#events li[data-kind=\"ejected\"]')].some(li => li.textContent.includes('{dead}'))"
        ))
        .await;
    assert_eq!(dead_listed, true, "no ejection of {dead} listed");
    let shown = eventually(PATIENCE, async || {
        let text = browser
            .script(&format!("return document.querySelector('{row}').innerText"))
            .await;
        text.as_str()
            .is_some_and(|t| t.contains("ready") && t.contains("config"))
    })
    .await;
    assert!(shown, "the row of a never showed its state");

    browser
        .click(&browser.find(&format!("{row} button[data-action=\"drain\"]")).await)
        .await;
    let drained = eventually(PATIENCE, async || {
        api.backend("web", a.addr).await.is_some_and(|v| v["state"] == "drain")
    })
    .await;
    assert!(drained, "the click did not drain a: {}", api.pool("web").await);
    let updated = eventually(PATIENCE, async || {
        let text = browser
            .script(&format!("return document.querySelector('{row} .state').innerText"))
            .await;
        text == "drain"
    })
    .await;
    assert!(updated, "the page did not show the new state");
    let listed = eventually(PATIENCE, async || {
        let script = "return document.querySelector('#events li').textContent";
        let text = browser.script(script).await;
        text.as_str()
            .is_some_and(|t| t.contains("changed") && t.contains("ready → drain"))
    })
    .await;
    assert!(listed, "the drain is not the newest event");
    // Reloading the page does not ask again.
    browser.goto(&format!("{origin}/")).await;
    browser.find(&row).await;
    let login_hidden = browser
        .script("return document.getElementById('login').classList.contains('hidden')")
        .await;
    assert_eq!(login_hidden, true, "the token was asked twice");

    let console = browser.log("browser").await;
    let errors: Vec<_> = console.iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    // (url, the document that asked for it): the browser's own pages (chrome://) ask for their
    // resources too; everything the dashboard asks for, and every web request at all, must stay
    // on the admin listener.
    let requests: Vec<(String, String)> = browser
        .log("performance")
        .await
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e["message"].as_str()?).ok())
        .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
        .filter_map(|m| {
            let params = &m["message"]["params"];
            let url = params["request"]["url"].as_str()?.to_string();
            Some((url, params["documentURL"].as_str().unwrap_or("").to_string()))
        })
        .collect();
    let outside: Vec<_> = requests
        .iter()
        .filter(|(url, doc)| (doc.starts_with(&origin) || url.starts_with("http")) && !url.starts_with(&origin))
        .collect();
    assert!(outside.is_empty(), "requests outside lb: {outside:?}");
    let requests: Vec<&String> = requests
        .iter()
        .filter(|(_, doc)| doc.starts_with(&origin))
        .map(|(u, _)| u)
        .collect();
    assert!(requests.len() >= 4, "too few requests seen: {requests:?}");
    assert!(requests.iter().any(|u| u.ends_with("/dashboard.js")), "{requests:?}");
}
