//! The registration churn of the crash test: clients that each own a set of backends, send them
//! random `PUT`/`PATCH`/`DELETE`s over one keep-alive connection, check every answer against
//! their own model of those backends, and remember what was answered and what was in flight
//! when lb died; then the state file and the restored view are checked against that record.

use super::common::client::{empty, full, request, Client};
use super::common::rng::XorShift;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The TTL of the churn's registrations: long enough that none runs out during the test.
pub const TTL_MS: u64 = 300_000;
const STATES: [&str; 3] = ["ready", "drain", "maint"];

/// The wall clock in milliseconds since the Unix epoch, as lb's deadlines are.
pub fn unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    since.as_millis() as u64
}

/// A registered backend as the test predicts it: weight, state, whether it has a TTL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reg {
    pub weight: u64,
    pub state: String,
    pub ttl: bool,
}

impl Reg {
    /// The backend as the API shows it (`backend` of an answer, or a pool's member).
    pub fn from_view(b: &Value) -> Reg {
        Reg {
            weight: b["weight"].as_u64().expect("weight"),
            state: b["state"].as_str().expect("state").to_string(),
            ttl: !b["ttl_remaining_s"].is_null(),
        }
    }
}

/// One request of the churn. `ttl`: `Some(true)` sets the TTL, `Some(false)` removes it.
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        weight: Option<u64>,
        state: Option<&'static str>,
        ttl: Option<bool>,
    },
    Patch {
        weight: Option<u64>,
        state: Option<&'static str>,
    },
    Delete,
}

impl Op {
    /// A random request: registrations with some fields, heartbeats, changes, removals.
    fn random(rng: &mut XorShift) -> Op {
        let weight = |rng: &mut XorShift| (rng.below(2) == 0).then(|| 1 + rng.below(8) as u64);
        let state = |rng: &mut XorShift| (rng.below(2) == 0).then(|| *rng.pick(&STATES));
        match rng.below(10) {
            0..=3 => Op::Put {
                weight: weight(rng),
                state: state(rng),
                ttl: [None, None, Some(true), Some(true), Some(false)][rng.below(5)],
            },
            4 | 5 => Op::Put {
                weight: None,
                state: None,
                ttl: Some(true),
            },
            6..=8 => match (weight(rng), state(rng)) {
                (None, None) => Op::Patch {
                    weight: Some(1 + rng.below(8) as u64),
                    state: None,
                },
                (weight, state) => Op::Patch { weight, state },
            },
            _ => Op::Delete,
        }
    }

    fn method(&self) -> &'static str {
        match self {
            Op::Put { .. } => "PUT",
            Op::Patch { .. } => "PATCH",
            Op::Delete => "DELETE",
        }
    }

    fn body(&self) -> Option<String> {
        let (weight, state, ttl) = match self {
            Op::Put { weight, state, ttl } => (weight, state, ttl),
            Op::Patch { weight, state } => (weight, state, &None),
            Op::Delete => return None,
        };
        let mut fields = Vec::new();
        if let Some(w) = weight {
            fields.push(format!("\"weight\": {w}"));
        }
        if let Some(s) = state {
            fields.push(format!("\"state\": \"{s}\""));
        }
        match ttl {
            Some(true) => fields.push(format!("\"ttl\": \"{}s\"", TTL_MS / 1000)),
            Some(false) => fields.push("\"ttl\": null".to_string()),
            None => {}
        }
        Some(format!("{{{}}}", fields.join(", ")))
    }

    /// The status this request is answered with and the backend after it, from `before`.
    pub fn predict(&self, before: &Option<Reg>) -> (u16, Option<Reg>) {
        match (self, before) {
            (Op::Put { weight, state, ttl }, _) => {
                let base = before.clone().unwrap_or(Reg {
                    weight: 1,
                    state: "ready".to_string(),
                    ttl: false,
                });
                let after = Reg {
                    weight: weight.unwrap_or(base.weight),
                    state: state.map_or(base.state, str::to_string),
                    ttl: ttl.unwrap_or(base.ttl),
                };
                (if before.is_some() { 200 } else { 201 }, Some(after))
            }
            (_, None) => (404, None),
            (Op::Patch { weight, state }, Some(b)) => {
                let after = Reg {
                    weight: weight.unwrap_or(b.weight),
                    state: state.map_or(b.state.clone(), str::to_string),
                    ttl: b.ttl,
                };
                (200, Some(after))
            }
            (Op::Delete, Some(_)) => (200, None),
        }
    }
}

/// What a client knows of one of its backends.
#[derive(Clone, Debug, Default)]
pub struct Track {
    /// The backend after the last answered request (`None`: not registered).
    pub answered: Option<Reg>,
    /// The request sent but not answered when lb died.
    pub in_flight: Option<Op>,
    /// The earliest deadline the state file may hold: set by the last answered registration
    /// with a TTL, which is written before it is answered.
    pub floor_ms: Option<u64>,
    /// Heartbeats answered since: (when the answer came, the earliest deadline it set).
    pub heartbeats: Vec<(u64, u64)>,
}

impl Track {
    /// The states the state file may hold: the answered one, or the one after the request in
    /// flight.
    pub fn allowed(&self) -> Vec<Option<Reg>> {
        let mut allowed = vec![self.answered.clone()];
        if let Some(op) = &self.in_flight {
            allowed.push(op.predict(&self.answered).1);
        }
        allowed
    }

    /// Records `op`, sent at `sent` and answered at `received` with `result`, leading to `after`.
    fn answered(&mut self, op: &Op, result: Option<&str>, after: Option<Reg>, (sent, received): (u64, u64)) {
        let with_ttl = after.as_ref().is_some_and(|r| r.ttl);
        match result {
            Some("renewed") if with_ttl => self.heartbeats.push((received, sent + TTL_MS)),
            Some(_) if !with_ttl => (self.floor_ms, self.heartbeats) = (None, Vec::new()),
            Some(_) if matches!(op, Op::Put { .. }) => {
                (self.floor_ms, self.heartbeats) = (Some(sent + TTL_MS), Vec::new());
            }
            _ => {}
        }
        self.answered = after;
        self.in_flight = None;
    }
}

/// What one client saw in one round.
#[derive(Debug, Default)]
pub struct Seen {
    pub tracks: BTreeMap<SocketAddr, Track>,
    /// When the last answered change (written before its answer) was sent.
    pub last_change_sent: u64,
    /// When the last answered heartbeat was sent.
    pub last_heartbeat_sent: u64,
}

/// Shared between the clients of a round and the test that kills lb.
#[derive(Default)]
pub struct Round {
    /// Requests answered so far.
    pub answered: AtomicUsize,
    /// Set just before lb is killed: from then on a failed request is expected.
    pub killed: AtomicBool,
}

/// Client `seed`'s churn on its `tracks` through the admin listener at `admin`, until a request
/// fails after lb was killed or `limit` requests were answered.
pub async fn client(
    admin: SocketAddr,
    seed: u64,
    tracks: BTreeMap<SocketAddr, Track>,
    round: Arc<Round>,
    limit: usize,
) -> Seen {
    let mut rng = XorShift(seed);
    let mut seen = Seen {
        tracks,
        ..Seen::default()
    };
    let addrs: Vec<SocketAddr> = seen.tracks.keys().copied().collect();
    let mut conn = Client::connect(admin).await.expect("connect to the admin listener");
    for _ in 0..limit {
        let (addr, op) = (*rng.pick(&addrs), Op::random(&mut rng));
        let track = seen.tracks.get_mut(&addr).expect("own backend");
        track.in_flight = Some(op.clone());
        let path = format!("/api/v1/pools/web/backends/{addr}");
        let body = op.body().map_or_else(empty, full);
        let sent = unix_ms();
        let resp = match conn.send(request(op.method(), &path, body)).await {
            Ok(resp) => resp,
            Err(e) => {
                assert!(round.killed.load(Ordering::SeqCst), "{addr} {op:?}: {e} while lb runs");
                return seen;
            }
        };
        let received = unix_ms();
        let (status, after) = op.predict(&track.answered);
        let json: Value = serde_json::from_slice(&resp.body).expect("a JSON answer");
        assert_eq!(resp.status, status, "{addr} {op:?} after {:?}: {json}", track.answered);
        if let (Some(want), Op::Put { .. } | Op::Patch { .. }) = (&after, &op) {
            assert_eq!(&Reg::from_view(&json["backend"]), want, "{addr} {op:?}: {json}");
        }
        let result = json["result"].as_str();
        match result {
            Some("renewed") => seen.last_heartbeat_sent = sent,
            Some(_) => seen.last_change_sent = sent,
            None => {}
        }
        track.answered(&op, result, after, (sent, received));
        round.answered.fetch_add(1, Ordering::SeqCst);
    }
    seen
}

/// The registrations in the state file `text`: address → (backend, deadline). Panics when
/// the file does not parse or holds anything the churn cannot have written.
pub fn parse_state(text: &str) -> BTreeMap<SocketAddr, (Reg, Option<u64>)> {
    let file: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("the state file does not parse ({e}):\n{text}"));
    assert_eq!(file["version"], 1, "{text}");
    let web = &file["pools"]["web"];
    assert!(web["overrides"].is_null() && web["removed"].is_null(), "{text}");
    let registered = web["registered"].as_array().cloned().unwrap_or_default();
    registered
        .iter()
        .map(|r| {
            let addr = r["address"].as_str().and_then(|a| a.parse().ok()).expect("address");
            let reg = Reg {
                weight: r["weight"].as_u64().expect("weight"),
                state: r["state"].as_str().expect("state").to_string(),
                ttl: r["ttl_ms"].as_u64().is_some(),
            };
            (addr, (reg, r["expires_at_ms"].as_u64()))
        })
        .collect()
}

/// Checks the deadline `written` of a backend tracked by `track` against what was answered:
/// not before its last registration's, nor before any heartbeat answered before `written_by`
/// (by then the file holds every heartbeat), nor after what lb could have set by `killed_at`.
pub fn check_deadline(track: &Track, written: u64, written_by: u64, killed_at: u64) -> Result<(), String> {
    let heartbeats = track.heartbeats.iter().filter(|(received, _)| *received < written_by);
    let floor = heartbeats.map(|(_, d)| *d).chain(track.floor_ms).max().unwrap_or(0);
    if written < floor {
        return Err(format!("deadline {written} is older than {floor}, answered before"));
    }
    if written > killed_at + TTL_MS {
        return Err(format!("deadline {written} is later than any lb could set"));
    }
    Ok(())
}
