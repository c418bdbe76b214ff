//! A real headless Chromium driven through ChromeDriver's W3C WebDriver protocol (JSON over
//! HTTP on loopback): enough to load a page, find and click elements, type, answer a dialog, run
//! a script, and read the browser's console and network logs. Chromium and ChromeDriver come
//! from Debian (`scripts/setup` installs them).

use super::client::{full, request, Client};
use super::{eventually, free_addr, Guard, TempDir, PATIENCE};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver process with one browser session; both end on drop.
pub struct Browser {
    driver: SocketAddr,
    session: String,
    _proc: Guard,
    _profile: TempDir,
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium with a fresh profile and no background
    /// networking (so the only requests are the page's).
    pub async fn start() -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: run scripts/setup"
            );
        }
        let driver = free_addr();
        let proc = Guard(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={}", driver.port()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let up = eventually(PATIENCE, async || {
            raw(driver, "GET", "/status", None)
                .await
                .is_some_and(|v| v["value"]["ready"] == true)
        })
        .await;
        assert!(up, "chromedriver did not come up");
        let profile = TempDir::new("chromium");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.0.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"}
        }}});
        let created = raw(driver, "POST", "/session", Some(caps)).await.expect("new session");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Browser {
            driver,
            session,
            _proc: proc,
            _profile: profile,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = raw(self.driver, method, &path, body).await.expect("webdriver call");
        answer["value"].clone()
    }

    /// Loads `url`.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The first element matching `css`, waiting for it.
    pub async fn find(&self, css: &str) -> String {
        let mut found = None;
        let ok = eventually(PATIENCE, async || {
            let v = self
                .call("POST", "/element", Some(json!({"using": "css selector", "value": css})))
                .await;
            found = v[ELEMENT].as_str().map(str::to_string);
            found.is_some()
        })
        .await;
        assert!(ok, "no element {css}");
        found.unwrap_or_default()
    }

    /// Clicks `element`.
    pub async fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), Some(json!({})))
            .await;
    }

    /// Types `text` into `element`.
    pub async fn type_into(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The text of the page's open dialog (`alert`, `confirm`), waiting for one to open.
    pub async fn dialog_text(&self) -> String {
        let mut text = None;
        let open = eventually(PATIENCE, async || {
            text = self.call("GET", "/alert/text", None).await.as_str().map(str::to_string);
            text.is_some()
        })
        .await;
        assert!(open, "no dialog opened");
        text.unwrap_or_default()
    }

    /// Answers the page's open dialog: OK when `accept`, else Cancel.
    pub async fn answer_dialog(&self, accept: bool) {
        let answer = if accept { "accept" } else { "dismiss" };
        self.call("POST", &format!("/alert/{answer}"), Some(json!({}))).await;
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
            .await
    }

    /// The browser's log of `kind` (`browser` for the console, `performance` for DevTools
    /// events) since the last call.
    pub async fn log(&self, kind: &str) -> Vec<Value> {
        let v = self.call("POST", "/se/log", Some(json!({ "type": kind }))).await;
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The guard kills ChromeDriver, and Chromium with it (its child).
        let _ = std::process::Command::new("pkill")
            .args(["-f", &format!("user-data-dir={}", self._profile.0.display())])
            .status();
    }
}

/// One WebDriver call: `None` when the driver does not answer.
async fn raw(driver: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
    let body = body.unwrap_or(Value::Null);
    let data = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut req = request(method, path, full(data));
    req.headers_mut()
        .insert("content-type", "application/json".parse().ok()?);
    let mut client = Client::connect(driver).await.ok()?;
    let resp = client.send(req).await.ok()?;
    serde_json::from_slice(&resp.body).ok()
}
