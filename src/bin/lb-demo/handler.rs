//! What a demo backend answers on each route, and the counters it keeps.

use crate::body::{full, parts, pattern, stream, AnyBody};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type Reply = Result<Response<AnyBody>, std::convert::Infallible>;

/// One named backend and its live settings.
pub struct Backend {
    name: String,
    /// The `version` of `/json` (`--api-version`).
    api_version: String,
    delay_ms: AtomicU64,
    health: AtomicU16,
    /// Fail one request in `fail_every` (0: never).
    fail_every: u64,
    requests: AtomicU64,
    connections: AtomicU64,
    inflight: AtomicI64,
}

impl Backend {
    /// A backend answering as `name`, its `/json` saying `api_version`.
    pub fn new(name: &str, api_version: &str, delay: Duration, fail_rate: f64) -> Self {
        let fail_every = if fail_rate > 0.0 {
            (1.0 / fail_rate.min(1.0)).round() as u64
        } else {
            0
        };
        Backend {
            name: name.to_string(),
            api_version: api_version.to_string(),
            delay_ms: AtomicU64::new(delay.as_millis() as u64),
            health: AtomicU16::new(200),
            fail_every,
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            inflight: AtomicI64::new(0),
        }
    }

    /// Counts an accepted connection.
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Relaxed);
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Reply {
        let path = req.uri().path().to_string();
        if path == "/healthz" {
            let code = self.health.load(Relaxed);
            return Ok(self.reply(code, if code == 200 { "ok\n" } else { "failing\n" }));
        }
        if let Some(rest) = path.strip_prefix("/_demo/") {
            return Ok(self.control(rest));
        }
        if path == "/ws" {
            return Ok(self.with_name(crate::ws::handshake(req)));
        }
        let n = self.requests.fetch_add(1, Relaxed) + 1;
        self.inflight.fetch_add(1, Relaxed);
        let _done = Done(&self.inflight);
        let delay = self.delay_ms.load(Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if self.fail_every > 0 && n % self.fail_every == 0 {
            return Ok(self.reply(500, &format!("{} failed on purpose\n", self.name)));
        }
        Ok(self.route(&path, req).await)
    }

    async fn route(&self, path: &str, req: Request<Incoming>) -> Response<AnyBody> {
        let (first, arg) = split_arg(path);
        match (first, arg) {
            ("delay", Some(ms)) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.reply(200, &format!("{}\n", self.name))
            }
            ("status", Some(code)) => self.reply(code as u16, &format!("{} {code}\n", self.name)),
            ("bytes", Some(len)) => self.with_name(Response::new(pattern(len))),
            ("parts", Some(n)) => self.parts(n.clamp(1, 100)),
            ("echo", _) => self.echo(req),
            ("headers", _) => self.headers(req).await,
            ("upload", _) => self.upload(req).await,
            ("json", _) => self.json(),
            _ => self.reply(200, &format!("{}\n", self.name)),
        }
    }

    /// `n` parts of 8 bytes, a second apart, in a `Content-Length` body.
    fn parts(&self, n: u64) -> Response<AnyBody> {
        let mut resp = Response::new(parts(n, 8, Duration::from_secs(1)));
        resp.headers_mut().insert(
            "content-length",
            (n * 8).to_string().parse().expect("a number is a valid header"),
        );
        self.with_name(resp)
    }

    /// A JSON document like an API's, for rollouts' body comparisons: fixed fields, the
    /// version, the backend's name and a timestamp that differs on every answer.
    fn json(&self) -> Response<AnyBody> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let body = format!(
            "{{\"service\":\"demo\",\"version\":{},\"backend\":{},\"timestamp\":{millis},\
             \"items\":[{{\"id\":1,\"price\":10}},{{\"id\":2,\"price\":20}}]}}\n",
            quoted(&self.api_version),
            quoted(&self.name),
        );
        self.reply_as(200, "application/json", &body)
    }

    fn echo(&self, req: Request<Incoming>) -> Response<AnyBody> {
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let content_type = req.headers().get("content-type").cloned();
        let mut resp = Response::new(stream(req.into_body()));
        let headers = resp.headers_mut();
        headers.insert("x-echo-method", method.parse().expect("a method is a valid header"));
        if let Ok(value) = uri.parse() {
            headers.insert("x-echo-uri", value);
        }
        if let Some(ct) = content_type {
            headers.insert("content-type", ct);
        }
        self.with_name(resp)
    }

    async fn upload(&self, req: Request<Incoming>) -> Response<AnyBody> {
        match body_length(req.into_body()).await {
            Ok(total) => self.reply(200, &format!("received {total} bytes\n")),
            Err(e) => self.reply(400, &format!("body error: {e}\n")),
        }
    }

    /// The request line and headers, then the body's length (read whole first, so the
    /// connection stays usable).
    async fn headers(&self, req: Request<Incoming>) -> Response<AnyBody> {
        let mut text = dump_headers(&req);
        match body_length(req.into_body()).await {
            Ok(total) => {
                let _ = writeln!(text, "body: {total} bytes");
                self.reply(200, &text)
            }
            Err(e) => self.reply(400, &format!("body error: {e}\n")),
        }
    }

    fn control(&self, rest: &str) -> Response<AnyBody> {
        match split_arg(&format!("/{rest}")) {
            ("stats", _) => {
                let json = format!(
                    "{{\"name\":\"{}\",\"requests\":{},\"connections\":{},\"inflight\":{}}}\n",
                    self.name,
                    self.requests.load(Relaxed),
                    self.connections.load(Relaxed),
                    self.inflight.load(Relaxed)
                );
                self.reply(200, &json)
            }
            ("delay", Some(ms)) => {
                self.delay_ms.store(ms, Relaxed);
                self.reply(200, &format!("delay {ms}ms\n"))
            }
            ("health", Some(code)) if (100..600).contains(&code) => {
                self.health.store(code as u16, Relaxed);
                self.reply(200, &format!("healthz answers {code}\n"))
            }
            _ => self.reply(404, "unknown control\n"),
        }
    }

    fn reply(&self, code: u16, text: &str) -> Response<AnyBody> {
        self.reply_as(code, "text/plain", text)
    }

    fn reply_as(&self, code: u16, content_type: &'static str, text: &str) -> Response<AnyBody> {
        let mut resp = Response::new(full(text.to_string()));
        *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static(content_type));
        self.with_name(resp)
    }

    fn with_name(&self, mut resp: Response<AnyBody>) -> Response<AnyBody> {
        if let Ok(name) = self.name.parse() {
            resp.headers_mut().insert("x-backend", name);
        }
        resp
    }
}

/// Decrements the in-flight count when a request ends, however it ends.
struct Done<'a>(&'a AtomicI64);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// `text` as a JSON string, quotes and escapes included.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `/delay/250` → (`delay`, Some(250)); `/echo/x` → (`echo`, None).
fn split_arg(path: &str) -> (&str, Option<u64>) {
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let first = parts.next().unwrap_or("");
    (first, parts.next().and_then(|a| a.parse().ok()))
}

async fn body_length(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        total += frame?.data_ref().map_or(0, |d| d.len() as u64);
    }
    Ok(total)
}

fn dump_headers(req: &Request<Incoming>) -> String {
    let mut out = format!("{} {}\n", req.method(), req.uri());
    for (name, value) in req.headers() {
        let _ = writeln!(out, "{name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
    out
}
