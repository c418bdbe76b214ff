//! The rollouts part of the API: `GET /api/v1/rollouts`, `POST /api/v1/rollouts` with a rollout
//! (the fields of the file's `rollouts:` entries, as JSON), `GET /api/v1/rollouts/{route}`, and
//! `POST /api/v1/rollouts/{route}/{pause|resume|abort|promote}`. Bodies are read whole or refused
//! with a 400 that says what is wrong; the changes are the runtime's transactions.

use super::{error, not_allowed, refused, reply};
use crate::config::RolloutConf;
use crate::control::admin::input;
use crate::control::admin::{Admin, Reply, Request};
use crate::control::runtime::RolloutAction;
use serde_json::json;

/// `GET` or `POST /api/v1/rollouts`.
pub(super) async fn rollouts(admin: &Admin, req: &Request<'_>) -> Reply {
    match req.method {
        "GET" => reply(200, &json!({ "rollouts": admin.runtime.rollouts().await })),
        "POST" => create(admin, req.body).await,
        _ => not_allowed("GET, POST"),
    }
}

async fn create(admin: &Admin, body: &[u8]) -> Reply {
    if body.iter().all(u8::is_ascii_whitespace) {
        return error(
            400,
            "a POST needs a JSON body: {\"route\": ..., \"baseline\": ..., \"candidate\": ..., \"steps\": [\"5%\", ...]}",
        );
    }
    let spec = match rollout_of(body) {
        Ok(spec) => spec,
        Err(msg) => return error(400, msg),
    };
    if admin.traffic.draining() {
        return super::stopping();
    }
    match admin.runtime.create_rollout(spec).await {
        Ok(view) => reply(201, &view),
        Err(refusal) => refused(refusal),
    }
}

/// The rollout in a `POST` body, or what is wrong with it, naming the field.
fn rollout_of(body: &[u8]) -> Result<RolloutConf, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    if !value.is_object() {
        return Err("invalid JSON body: expected an object {...}".into());
    }
    serde_path_to_error::deserialize(value).map_err(|e| match e.path().to_string().as_str() {
        "." => format!("invalid rollout: {}", e.inner()),
        path => format!("invalid rollout: {path}: {}", e.inner()),
    })
}

/// `GET /api/v1/rollouts/{route}`.
pub(super) async fn rollout(admin: &Admin, req: &Request<'_>, route: &str) -> Reply {
    let route = input::decode(route).unwrap_or_default();
    match req.method {
        "GET" => match admin.runtime.rollout(&route).await {
            Some(view) => reply(200, &view),
            None => error(404, format!("route {route:?} has no rollout")),
        },
        _ => not_allowed("GET"),
    }
}

/// `POST /api/v1/rollouts/{route}/{action}`.
pub(super) async fn act(admin: &Admin, req: &Request<'_>, route: &str, action: &str) -> Reply {
    let route = input::decode(route).unwrap_or_default();
    let Some(action) = RolloutAction::named(action) else {
        return error(
            404,
            format!(
                "nothing at {}: the actions are pause, resume, abort and promote",
                req.path
            ),
        );
    };
    if req.method != "POST" {
        return not_allowed("POST");
    }
    if admin.traffic.draining() {
        return super::stopping();
    }
    match admin.runtime.act_on_rollout(&route, action).await {
        Ok(view) => reply(200, &view),
        Err(refusal) => refused(refusal),
    }
}
