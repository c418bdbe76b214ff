//! The routes part of the API: `GET /api/v1/routes`, `GET /api/v1/routes/{name}`, and
//! `PATCH /api/v1/routes/{name}` with `{"split": [{"upstream": U, "weight": N}, ...]}`, the
//! body read whole into new split weights or a 400 that says what is wrong. The change itself is
//! the runtime's transaction.

use super::{error, not_allowed, refused, reply};
use crate::control::admin::input::{self, Bad};
use crate::control::admin::{Admin, Reply, Request};
use crate::control::changes::routes::SplitWeights;
use serde::Deserialize;
use serde_json::json;

/// The body of `PATCH /api/v1/routes/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    split: Vec<SideBody>,
}

/// One side in it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SideBody {
    upstream: String,
    weight: u32,
}

/// New split weights from a `PATCH` body.
fn split_weights(body: &[u8]) -> Result<SplitWeights, Bad> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err((
            400,
            "a PATCH needs a JSON body: {\"split\": [{\"upstream\": \"NAME\", \"weight\": N}, ...]}".into(),
        ));
    }
    let b: PatchBody = input::json(body)?;
    if b.split.is_empty() {
        return Err((
            400,
            "split: list at least one {\"upstream\": ..., \"weight\": N}".into(),
        ));
    }
    Ok(b.split.into_iter().map(|s| (s.upstream, s.weight)).collect())
}

/// `GET /api/v1/routes`.
pub(super) async fn routes(admin: &Admin, req: &Request<'_>) -> Reply {
    match req.method {
        "GET" => reply(200, &json!({ "routes": admin.runtime.routes().await })),
        _ => not_allowed("GET"),
    }
}

/// `GET` or `PATCH /api/v1/routes/{name}`.
pub(super) async fn route(admin: &Admin, req: &Request<'_>, name: &str) -> Reply {
    let name = input::decode(name).unwrap_or_default();
    let weights = match req.method {
        "GET" => {
            return match admin.runtime.route(&name).await {
                Some(view) => reply(200, &view),
                None => error(404, format!("no route named {name:?}")),
            }
        }
        "PATCH" => split_weights(req.body),
        _ => return not_allowed("GET, PATCH"),
    };
    let weights = match weights {
        Ok(weights) => weights,
        Err((status, msg)) => return error(status, msg),
    };
    if admin.traffic.draining() {
        return super::stopping();
    }
    match admin.runtime.set_split(&name, weights).await {
        Ok(applied) => reply(200, &applied),
        Err(refusal) => refused(refusal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_read_whole_or_refused() {
        let ok =
            split_weights(br#"{"split": [{"upstream": "api", "weight": 95}, {"upstream": "canary", "weight": 5}]}"#);
        assert_eq!(ok, Ok(vec![("api".to_string(), 95), ("canary".to_string(), 5)]));
        for (body, words) in [
            ("", "needs a JSON body"),
            ("{\"split\": []}", "at least one"),
            ("{\"split\": [{\"upstream\": \"api\"}]}", "missing field `weight`"),
            (
                "{\"split\": [{\"upstream\": \"api\", \"weight\": -1}]}",
                "invalid value",
            ),
            (
                "{\"split\": [{\"upstream\": \"api\", \"weight\": 1, \"x\": 1}]}",
                "unknown field",
            ),
            ("{\"weights\": {}}", "unknown field"),
            ("[1]", "expected an object"),
            ("{\"split\": ", "invalid JSON"),
        ] {
            let (status, msg) = split_weights(body.as_bytes()).expect_err(body);
            assert_eq!(status, 400, "{body}");
            assert!(msg.contains(words), "{body}: {msg}");
        }
    }
}
