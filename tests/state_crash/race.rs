//! The race test's parts: many clients changing one backend at the same moment, and the checks
//! that the changes took effect one after another and that the API, the state file and the
//! traffic agree on the last.

use super::churn::{parse_state, Reg};
use super::common::admin::{backend_path, Api};
use super::common::client::{full, request, Client};
use super::common::rng::XorShift;
use super::common::{tally, Lb};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Clients setting the same backend at once, and requests each.
const RACERS: usize = 8;
const RACE_REQUESTS: usize = 12;

/// [`RACERS`] clients change backend `b` at the same moment, [`RACE_REQUESTS`] requests each,
/// by `PUT` or `PATCH`, each request to a weight of its own (from `first_weight` up) and a state
/// of `states`. Checks that every answer shows its own change whole, that the changes took
/// effect one after another (each one's weight follows the last one's: no lost update), and
/// that the API, the state file and the traffic agree on the last one, which it returns.
pub async fn race(lb: &Lb, b: SocketAddr, first_weight: u64, states: &[&'static str], rng: &mut XorShift) -> Reg {
    let api = Api::new(lb.admin());
    let mark = events(&api).await.first().map_or(0, |e| e["id"].as_u64().unwrap_or(0));
    let before = api.backend("web", b).await.expect("b is a member");
    let plan: Vec<(u64, &'static str, bool)> = (0..RACERS * RACE_REQUESTS)
        .map(|i| (first_weight + i as u64, *rng.pick(states), rng.below(2) == 0))
        .collect();
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let racers: Vec<_> = plan
        .chunks(RACE_REQUESTS)
        .map(|mine| tokio::spawn(racer(lb.admin(), b, mine.to_vec(), Arc::clone(&start))))
        .collect();
    for racer in racers {
        racer.await.expect("a racer failed");
    }
    let mut weight = before["weight"].as_u64().expect("weight");
    let order = weight_changes(&api, b, mark).await;
    assert_eq!(order.len(), plan.len(), "one event per change: {order:?}");
    for (from, to) in &order {
        assert_eq!(
            *from, weight,
            "a change did not start from the one before it: {order:?}"
        );
        weight = *to;
    }
    let mut applied: Vec<u64> = order.iter().map(|(_, to)| *to).collect();
    applied.sort_unstable();
    assert!(applied.iter().copied().eq(plan.iter().map(|p| p.0)), "{applied:?}");
    let state = plan.iter().find(|p| p.0 == weight).expect("planned").1.to_string();
    let last = Reg {
        weight,
        state,
        ttl: false,
    };
    agree(lb, &api, b, &last).await;
    last
}

/// One racer: waits for the others, then sends its `changes` (weight, state, by PUT) to `b`.
async fn racer(
    admin: SocketAddr,
    b: SocketAddr,
    changes: Vec<(u64, &'static str, bool)>,
    start: Arc<tokio::sync::Barrier>,
) {
    let mut conn = Client::connect(admin).await.expect("connect to the admin listener");
    start.wait().await;
    for (weight, state, put) in changes {
        let body = format!(r#"{{"weight": {weight}, "state": "{state}"}}"#);
        let method = if put { "PUT" } else { "PATCH" };
        let resp = conn.send(request(method, &backend_path("web", b), full(body))).await;
        let resp = resp.expect("an answer");
        let json: Value = serde_json::from_slice(&resp.body).expect("a JSON answer");
        assert_eq!((resp.status, json["result"].as_str()), (200, Some("changed")), "{json}");
        let want = Reg {
            weight,
            state: state.to_string(),
            ttl: false,
        };
        assert_eq!(Reg::from_view(&json["backend"]), want, "answered another change");
    }
}

/// The API's recent events, newest first.
pub async fn events(api: &Api) -> Vec<Value> {
    let (status, json) = api.json("GET", "/api/v1/events", None).await;
    assert_eq!(status, 200, "{json}");
    json["events"].as_array().cloned().unwrap_or_default()
}

/// The weight changes of `b` recorded after event `mark`, oldest first: (from, to).
async fn weight_changes(api: &Api, b: SocketAddr, mark: u64) -> Vec<(u64, u64)> {
    let mut changes: Vec<(u64, u64)> = events(api)
        .await
        .iter()
        .filter(|e| e["id"].as_u64() > Some(mark) && e["kind"] == "changed" && e["backend"] == b.to_string())
        .map(|e| {
            let detail = e["detail"].as_str().unwrap_or_default();
            weight_change(detail).unwrap_or_else(|| panic!("no weight change in {e}"))
        })
        .collect();
    changes.reverse();
    changes
}

/// `(3, 5)` from an event's detail "state ready → drain, weight 3 → 5, through the admin API".
fn weight_change(detail: &str) -> Option<(u64, u64)> {
    let (from, rest) = detail.split("weight ").nth(1)?.split_once(" → ")?;
    let to = rest.split(',').next()?;
    Some((from.parse().ok()?, to.trim().parse().ok()?))
}

/// Checks that the API, the state file and the traffic agree that `b` is `want`: its share of
/// round robin beside a and c (weight 1 each) is its weight, or nothing when it is not ready.
async fn agree(lb: &Lb, api: &Api, b: SocketAddr, want: &Reg) {
    let view = api.backend("web", b).await.expect("b is a member");
    assert_eq!(&Reg::from_view(&view), want, "the API");
    let text = std::fs::read_to_string(lb.dir.path("state.json")).expect("the state file");
    assert_eq!(parse_state(&text).get(&b).map(|(r, _)| r), Some(want), "the state file");
    let counts = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
        pairs
            .iter()
            .filter(|p| p.1 > 0)
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    };
    let w = want.weight as usize;
    if want.state == "ready" {
        // Two whole cycles of the weighted round robin.
        let seen = tally(lb, "/", 2 * (w + 2)).await;
        assert_eq!(seen, counts(&[("a", 2), ("b", 2 * w), ("c", 2)]), "the traffic");
    } else {
        assert_not_to_b(&tally(lb, "/", 20).await, 20);
    }
}

/// Checks that the `n` requests of `seen` all went to a and c, none to b (not ready): b's turns
/// go to the others, so they share them, though not necessarily half each.
pub fn assert_not_to_b(seen: &BTreeMap<String, usize>, n: usize) {
    let to = |name: &str| seen.get(name).copied().unwrap_or(0);
    assert!(
        to("b") == 0 && to("a") > 0 && to("c") > 0 && to("a") + to("c") == n,
        "the traffic: {seen:?}"
    );
}
