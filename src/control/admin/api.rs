//! What the admin listener answers, as a function of the request: routing of the versioned
//! API paths, authentication, JSON in and out, errors as `{"error": "..."}` with the right
//! status. Changes themselves are the runtime's transactions.

use super::{assets, input, Admin, Reply, Request, MAX_BODY};
use crate::control::changes::{Change, Refusal};
use crate::control::metrics::CONTENT_TYPE as METRICS_TYPE;
use crate::control::{events, overview};
use serde::Serialize;
use serde_json::json;

#[path = "rollout_api.rs"]
mod rollout_api;
#[path = "route_api.rs"]
mod route_api;

const JSON: &str = "application/json";
/// The `Retry-After` of a change refused because the store cannot take it now, in seconds.
const RETRY_AFTER_S: u64 = 1;

fn reply(status: u16, body: &impl Serialize) -> Reply {
    let mut body = serde_json::to_vec_pretty(body).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    Reply {
        status,
        content_type: JSON,
        headers: Vec::new(),
        body,
        close: false,
    }
}

/// `body` as compact JSON: for answers as long as the history, whose arrays pretty-printing
/// would put one number a line.
fn compact(body: &impl Serialize) -> Reply {
    let mut body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    Reply {
        status: 200,
        content_type: JSON,
        headers: Vec::new(),
        body,
        close: false,
    }
}

/// `{"error": message}` with `status`.
pub fn error(status: u16, message: impl Into<String>) -> Reply {
    reply(status, &json!({ "error": message.into() }))
}

/// The answer to a body over [`MAX_BODY`]: 413, and the connection closes (the rest of the body
/// is not read).
pub fn too_large() -> Reply {
    Reply {
        close: true,
        ..error(413, format!("the request body is larger than {MAX_BODY} bytes"))
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Reply {
    Reply {
        status: 200,
        content_type,
        headers: vec![("content-security-policy", assets::CSP.to_string())],
        body: body.as_bytes().to_vec(),
        close: false,
    }
}

/// The dashboard page, told whether it must ask for the token.
fn dashboard(admin: &Admin) -> Reply {
    let auth = if admin.token.is_some() { "token" } else { "none" };
    let page = assets::DASHBOARD_HTML.replace("{{AUTH}}", auth);
    Reply {
        body: page.into_bytes(),
        ..asset("text/html; charset=utf-8", "")
    }
}

fn not_allowed(allow: &'static str) -> Reply {
    let mut r = error(405, format!("method not allowed here (allowed: {allow})"));
    r.headers.push(("allow", allow.to_string()));
    r
}

/// Answers `req`.
pub async fn handle(admin: &Admin, req: &Request<'_>) -> Reply {
    let path = req.path.trim_end_matches('/');
    match (req.method, path) {
        ("GET", "") => return dashboard(admin),
        ("GET", "/favicon.svg") => return asset("image/svg+xml", assets::FAVICON),
        ("GET", "/dashboard.js") => return asset("text/javascript; charset=utf-8", assets::DASHBOARD_JS),
        ("GET", "/rollouts.js") => return asset("text/javascript; charset=utf-8", assets::ROLLOUTS_JS),
        ("GET", "/dashboard.css") => return asset("text/css; charset=utf-8", assets::DASHBOARD_CSS),
        ("GET", "/healthz") => return reply(200, &json!({"status": "ok"})),
        ("GET", "/readyz") if admin.traffic.draining() => return reply(503, &json!({"status": "draining"})),
        ("GET", "/readyz") => return reply(200, &json!({"status": "ready"})),
        _ => {}
    }
    if !input::authorized(admin.token.as_deref(), req.authorization) {
        let mut r = error(
            401,
            "missing or wrong bearer token: send Authorization: Bearer <admin.token>",
        );
        r.headers.push(("www-authenticate", "Bearer realm=\"lb admin\"".into()));
        return r;
    }
    if path == "/metrics" {
        return match req.method {
            "GET" => Reply {
                status: 200,
                content_type: METRICS_TYPE,
                headers: Vec::new(),
                body: admin.metrics.render().into_bytes(),
                close: false,
            },
            _ => not_allowed("GET"),
        };
    }
    let Some(rest) = path.strip_prefix("/api/v1") else {
        return error(404, format!("nothing at {}: see /api/v1/openapi.json", req.path));
    };
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    match segments.as_slice() {
        ["openapi.json"] => match req.method {
            "GET" => asset(JSON, assets::OPENAPI),
            _ => not_allowed("GET"),
        },
        ["pools"] => match req.method {
            "GET" => reply(200, &json!({ "pools": admin.runtime.pools().await })),
            _ => not_allowed("GET"),
        },
        ["pools", pool] => match req.method {
            "GET" => match admin.runtime.pool(&input::decode(pool).unwrap_or_default()).await {
                Some(view) => reply(200, &view),
                None => error(404, format!("no pool named {pool:?}")),
            },
            _ => not_allowed("GET"),
        },
        ["pools", pool, "backends", addr] => backend(admin, req, pool, addr).await,
        ["routes"] => route_api::routes(admin, req).await,
        ["routes", name] => route_api::route(admin, req, name).await,
        ["rollouts"] => rollout_api::rollouts(admin, req).await,
        ["rollouts", route] => rollout_api::rollout(admin, req, route).await,
        ["rollouts", route, action] => rollout_api::act(admin, req, route, action).await,
        [what @ ("history" | "overview" | "events")] => match req.method {
            "GET" => report(admin, what, req.query),
            _ => not_allowed("GET"),
        },
        ["reload"] => match req.method {
            "POST" => reload(admin).await,
            _ => not_allowed("POST"),
        },
        _ => error(404, format!("nothing at {}: see /api/v1/openapi.json", req.path)),
    }
}

/// The dashboard's reports: the pools' history (`?since=` for the part after a time), the
/// overview of the last minute, the recent events.
fn report(admin: &Admin, what: &str, query: &str) -> Reply {
    let runtime = &admin.runtime;
    match what {
        "history" => match input::since(query) {
            Ok(since) => compact(&runtime.history().view(since)),
            Err((status, msg)) => error(status, msg),
        },
        "overview" => {
            let windows = runtime.history().windows();
            reply(200, &overview::build(&runtime.routing().load(), &windows))
        }
        _ => reply(
            200,
            &json!({ "capacity": events::CAPACITY, "events": runtime.events().list() }),
        ),
    }
}

async fn backend(admin: &Admin, req: &Request<'_>, pool: &str, addr: &str) -> Reply {
    let pool = input::decode(pool).unwrap_or_default();
    let addr = match input::address(addr) {
        Ok(addr) => addr,
        Err((status, msg)) => return error(status, msg),
    };
    let change = match req.method {
        "GET" => {
            return match admin.runtime.pool(&pool).await {
                None => error(404, format!("no pool named {pool:?}")),
                Some(view) => match view.backends.into_iter().find(|b| b.address == addr.to_string()) {
                    Some(b) => reply(200, &b),
                    None => error(404, format!("backend {addr} is not in pool {pool}")),
                },
            }
        }
        "PUT" => input::register(req.body).map(Change::Register),
        "PATCH" => input::update(req.body).map(Change::Update),
        "DELETE" => Ok(Change::Remove),
        _ => return not_allowed("GET, PUT, PATCH, DELETE"),
    };
    let change = match change {
        Ok(change) => change,
        Err((status, msg)) => return error(status, msg),
    };
    if admin.traffic.draining() {
        return stopping();
    }
    match admin.runtime.apply(&pool, addr, change).await {
        Ok(applied) => reply(if applied.result == "created" { 201 } else { 200 }, &applied),
        Err(refusal) => refused(refusal),
    }
}

/// The answer to a change the runtime refused. A 503 means the store (the state file, etcd)
/// cannot take changes now and nothing changed: worth retrying, so it says when, as lb's other
/// 503s do.
fn refused(refusal: Refusal) -> Reply {
    let mut r = error(refusal.status, refusal.message);
    if refusal.status == 503 {
        r.headers.push(("retry-after", RETRY_AFTER_S.to_string()));
    }
    r
}

async fn reload(admin: &Admin) -> Reply {
    if admin.traffic.draining() {
        return Reply {
            close: true,
            ..error(503, "this lb is stopping or handing over to a new process")
        };
    }
    match admin.runtime.reload().await {
        Ok(report) => reply(
            200,
            &json!({ "reloaded": true, "note": report.to_string(), "report": report }),
        ),
        Err(e) => error(400, format!("configuration not reloaded, nothing changed: {e}")),
    }
}

/// 503 for a change asked of an lb that is stopping or handing over: the connection closes, so
/// the client's retry reaches the new process.
pub(super) fn stopping() -> Reply {
    Reply {
        close: true,
        ..error(
            503,
            "this lb is stopping or handing over to a new process: retry, the next connection reaches the new one",
        )
    }
}
