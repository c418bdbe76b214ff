//! The dashboard in a real headless Chromium (Debian's, driven through ChromeDriver): it asks
//! for the token once, shows the pool's backends, a click on "Drain" changes the backend's
//! state as the API sees it, and the page logs no console error and requests nothing outside
//! lb's admin listener.

mod common;

use common::admin::Api;
use common::webdriver::Browser;
use common::{eventually, Demo, Lb, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_backends_and_drains_one_with_a_click() {
    let (a, b) = (Demo::start("a"), Demo::start("b"));
    let lb = Lb::start(&format!(
        "listeners: [{{address: \"{{listen}}\"}}]
admin: {{address: \"{{admin}}\", token: dash-token-1}}
upstreams:
  web:
    backends: [{}, {}]
    health_check: {{path: /healthz, interval: 500ms}}
",
        a.yaml(),
        b.yaml()
    ));
    let origin = format!("http://{}", lb.admin());
    let api = Api::with_token(lb.admin(), "dash-token-1");
    // Some traffic, so the charts have something to draw.
    common::tally(&lb, "/", 20).await;

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
