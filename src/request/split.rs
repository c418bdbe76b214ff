//! A route's weighted split between pools (`split:`, `split_by:`): which side serves a request.
//! Without `split_by`, smooth weighted round robin (nginx's: exact shares over any run of
//! requests, the sides interleaved); with a cookie, the side it names (lb sets it, an opaque id
//! of the route and the upstream); with a hash key, weighted rendezvous hashing of the key, so a
//! key stays on its side and only a changed side's keys move. A side whose pool has no usable
//! backend is passed over, its share going to the others by weight; a side of weight 0 takes
//! nothing. The weights change at runtime through [`Split::set_weights`] (the control plane's
//! one way in); picking a backend inside the chosen pool is the pool's business.

use crate::config::{HashKey, SplitBy};
use crate::request::key;
use crate::request::pool::Pool;
use crate::request::selection::{cookie_value, parse_cookie};
use pingora_http::RequestHeader;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The attributes of the split cookie, as lb's sticky cookie has them by default (one day).
const COOKIE_ATTRIBUTES: &str = "Path=/; Max-Age=86400; SameSite=Lax; HttpOnly";

/// The id a split cookie gives side `upstream` of route `route`: a 64-bit FNV-1a hash of
/// both, the same in every process and build (an upgrade, another instance, keep clients
/// where they are), and not the upstream's name.
pub fn side_id(route: &str, upstream: &str) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(b"lb-split\0");
    h.write(route.as_bytes());
    h.write(b"\0");
    h.write(upstream.as_bytes());
    h.finish()
}

/// One side of a split.
pub struct Side {
    /// The upstream's name.
    pub upstream: String,
    /// Its pool.
    pub pool: Arc<Pool>,
    /// Its cookie id ([`side_id`]).
    id: u64,
}

/// Smooth weighted round robin's state: each side's weight and current score.
struct Turns {
    weights: Vec<u32>,
    current: Vec<i64>,
}

/// What keeps a client on its side.
enum Keep {
    /// The split cookie: its name, and the key that reads it (`HashKey::Cookie`).
    Cookie(String, HashKey),
    /// A hash of this key.
    Key(HashKey),
}

/// A weighted choice between pools.
pub struct Split {
    sides: Box<[Side]>,
    by: Option<Keep>,
    turns: Mutex<Turns>,
}

/// The side chosen for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// Index of the side.
    pub side: usize,
    /// Whether the response sets the split cookie (the request did not carry this side's).
    pub set_cookie: bool,
}

impl Split {
    /// The pool of side `side`, if there is such a side.
    pub fn side_pool(&self, side: usize) -> Option<&Arc<Pool>> {
        self.sides.get(side).map(|s| &s.pool)
    }

    /// The split of route `route` (its name, or `routes[N]`) between `sides`
    /// (`(upstream, pool, weight)`), kept by `by`.
    pub fn new(route: &str, sides: Vec<(String, Arc<Pool>, u32)>, by: Option<SplitBy>) -> Split {
        let weights: Vec<u32> = sides.iter().map(|s| s.2).collect();
        let sides = sides
            .into_iter()
            .map(|(upstream, pool, _)| Side {
                id: side_id(route, &upstream),
                upstream,
                pool,
            })
            .collect();
        Split {
            sides,
            by: by.map(|by| match by {
                SplitBy::Cookie(name) => Keep::Cookie(name.clone(), HashKey::Cookie(name)),
                SplitBy::Key(key) => Keep::Key(key),
            }),
            turns: Mutex::new(Turns {
                current: vec![0; weights.len()],
                weights,
            }),
        }
    }

    /// The sides, in the route's order.
    pub fn sides(&self) -> &[Side] {
        &self.sides
    }

    /// The current weights, in the sides' order.
    pub fn weights(&self) -> Vec<u32> {
        self.turns().weights.clone()
    }

    /// Makes `weights` (in the sides' order; a missing one is 0) the weights, for the next
    /// request on; the round robin starts its cycle again.
    pub fn set_weights(&self, weights: &[u32]) {
        let mut turns = self.turns();
        turns.weights = (0..self.sides.len())
            .map(|i| weights.get(i).copied().unwrap_or(0))
            .collect();
        turns.current.iter_mut().for_each(|c| *c = 0);
    }

    fn turns(&self) -> std::sync::MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether every side's pool is reached over plaintext HTTP/1.1.
    pub fn plain_http1(&self) -> bool {
        self.sides.iter().all(|s| s.pool.plain_http1())
    }

    /// The side of `req` from `client`.
    pub fn choose(&self, req: &RequestHeader, client: Option<IpAddr>) -> Choice {
        let mut turns = self.turns();
        let eligible = self.eligible(&turns.weights);
        match &self.by {
            Some(Keep::Cookie(_, cookie)) => {
                let sent = key::extract(cookie, req, client).and_then(|k| parse_cookie(k.as_bytes()));
                let kept = sent.and_then(|id| self.sides.iter().position(|s| s.id == id));
                match kept.filter(|&i| eligible[i]) {
                    Some(side) => Choice {
                        side,
                        set_cookie: false,
                    },
                    None => Choice {
                        side: smooth(&mut turns, &eligible),
                        set_cookie: true,
                    },
                }
            }
            Some(Keep::Key(source)) => {
                let side = match key::extract(source, req, client) {
                    Some(k) => rendezvous(k.as_bytes(), &self.sides, &turns.weights, &eligible),
                    // Requests without the key are spread by weight, as a hash pool spreads them.
                    None => smooth(&mut turns, &eligible),
                };
                Choice {
                    side,
                    set_cookie: false,
                }
            }
            None => Choice {
                side: smooth(&mut turns, &eligible),
                set_cookie: false,
            },
        }
    }

    /// The sides a request may go to: those with weight whose pool has a usable backend; when
    /// none has one, every side with weight (its pool then answers 503 and says why).
    fn eligible(&self, weights: &[u32]) -> Vec<bool> {
        let usable: Vec<bool> = self
            .sides
            .iter()
            .zip(weights)
            .map(|(s, &w)| w > 0 && s.pool.has_usable())
            .collect();
        if usable.contains(&true) {
            usable
        } else {
            weights.iter().map(|&w| w > 0).collect()
        }
    }

    /// The `Set-Cookie` value that keeps a client on `side` (`None` without a cookie).
    pub fn cookie(&self, side: usize) -> Option<String> {
        let Some(Keep::Cookie(name, _)) = &self.by else {
            return None;
        };
        let id = self.sides.get(side)?.id;
        Some(format!("{name}={}; {COOKIE_ATTRIBUTES}", cookie_value(id)))
    }
}

/// Smooth weighted round robin over the `eligible` sides (nginx's): each adds its weight to its
/// score, the highest score wins and gives back the total. Over any run of requests each side's
/// share is within one request of its weight's.
fn smooth(turns: &mut Turns, eligible: &[bool]) -> usize {
    let Turns { weights, current } = turns;
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for i in 0..weights.len() {
        if !eligible.get(i).copied().unwrap_or(false) {
            continue;
        }
        current[i] += i64::from(weights[i]);
        total += i64::from(weights[i]);
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let best = best.unwrap_or(0);
    if let Some(c) = current.get_mut(best) {
        *c -= total;
    }
    best
}

/// Weighted rendezvous hashing: side `i` scores `w_i / -ln(u_i)`, `u_i` a uniform draw in
/// (0, 1) from the hash of `key` and the side's id, and the highest score wins. Side `i` wins
/// with probability `w_i / Σw`; a key moves only when its side goes (or another side's weight
/// grows past it), never because a third side changed.
fn rendezvous(key: &[u8], sides: &[Side], weights: &[u32], eligible: &[bool]) -> usize {
    let mut h = fnv::FnvHasher::default();
    h.write(key);
    let key_hash = h.finish();
    let mut best = (0, f64::MIN);
    for (i, side) in sides.iter().enumerate() {
        if !eligible.get(i).copied().unwrap_or(false) {
            continue;
        }
        let bits = mix(key_hash ^ side.id) >> 11;
        let u = (bits as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(weights[i]) / -u.ln();
        if score > best.1 {
            best = (i, score);
        }
    }
    best.0
}

/// SplitMix64's finaliser: every input bit moves every output bit (FNV alone mixes short keys
/// poorly).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
