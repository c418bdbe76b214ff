//! Request mirroring (`mirror:` on a route, nginx's `mirror`): a sampled copy of a request goes to
//! another pool once the request is read, its answer is read and thrown away. The client's
//! exchange never waits for it, and a slow or dead shadow pool only shows in
//! `lb_mirror_requests_total{route,result}`: copies run on their own tasks, at most
//! [`IN_FLIGHT`] at a time per route (more are dropped and counted), each within
//! [`MIRROR_TIMEOUT`].

use crate::config::Route;
use crate::request::pool::Pool;
use crate::request::shadow_compare::Answer;
use bytes::{Bytes, BytesMut};
use pingora_core::connectors::http::Connector;
use pingora_http::RequestHeader;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long one copy may take, from connecting to the end of its answer.
pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);

/// Copies in flight per route at most; past that, copies are dropped (and counted).
pub const IN_FLIGHT: usize = 256;

/// How a copy ended: the metric's `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The shadow pool answered (any status); the answer was read to its end.
    Answered,
    /// No connection, a broken exchange, or no usable backend in the shadow pool.
    Failed,
    /// Not done within [`MIRROR_TIMEOUT`].
    Timeout,
    /// Not sent: [`IN_FLIGHT`] copies were already on their way.
    Dropped,
    /// Not sent: the request body is larger than `mirror.max_body`.
    TooLarge,
}

impl Outcome {
    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
            Outcome::Dropped => "dropped",
            Outcome::TooLarge => "too_large",
        }
    }
}

/// Copies by route and outcome since start (kept across reloads: the metric is a counter).
static COUNTS: Mutex<BTreeMap<(Arc<str>, Outcome), u64>> = Mutex::new(BTreeMap::new());

fn count(route: &Arc<str>, outcome: Outcome) {
    if let Ok(mut counts) = COUNTS.lock() {
        *counts.entry((Arc::clone(route), outcome)).or_insert(0) += 1;
    }
}

/// Copies so far: (route, result, count).
pub fn counts() -> Vec<(Arc<str>, &'static str, u64)> {
    let Ok(counts) = COUNTS.lock() else { return Vec::new() };
    counts
        .iter()
        .map(|((r, o), n)| (Arc::clone(r), o.label(), *n))
        .collect()
}

/// What became of a copy whose answer is wanted (a rollout's shadow compares it).
pub enum Reply {
    /// The copy's pool answered: the answer, its body up to `max_body`.
    Answer(Answer),
    /// It was sent but gave no answer (no connection, a broken exchange, too slow).
    NoAnswer,
    /// It was not sent (too many in flight, a bad head).
    NotSent,
}

/// Where a wanted answer goes.
pub type OnReply = Box<dyn FnOnce(Reply) + Send>;

/// A route's mirror.
pub struct Mirror {
    /// The route, for the metric (its name, or `routes[N]`).
    route: Arc<str>,
    pool: Arc<Pool>,
    /// The share copied, from 0 to 1.
    sample: f64,
    /// Larger request bodies are not copied.
    pub max_body: usize,
    slots: Arc<Semaphore>,
    connector: Arc<Connector>,
}

impl Mirror {
    /// The mirror of `route` (the `index`th), its shadow pool taken from `pools`.
    pub fn of(index: usize, route: &Route, pools: &BTreeMap<String, Arc<Pool>>) -> Option<Arc<Self>> {
        let conf = route.mirror.as_ref()?;
        let pool = pools.get(&conf.upstream)?;
        let label = route.name.clone().unwrap_or_else(|| format!("routes[{index}]"));
        let max_body = usize::try_from(conf.max_body.0).unwrap_or(usize::MAX);
        Some(Arc::new(Mirror::new(
            Arc::from(label),
            Arc::clone(pool),
            conf.sample.0,
            max_body,
        )))
    }

    /// A mirror of `route` to `pool`: `sample` in percent, bodies up to `max_body` bytes.
    pub fn new(route: Arc<str>, pool: Arc<Pool>, sample: f64, max_body: usize) -> Self {
        Mirror {
            route,
            pool,
            sample: sample / 100.0,
            max_body,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            connector: Arc::new(Connector::new(None)),
        }
    }

    /// Whether this request is copied (drawn at the sample rate).
    pub fn sampled(&self) -> bool {
        self.sample >= 1.0 || (self.sample > 0.0 && rand_unit() < self.sample)
    }

    /// Counts a copy not sent because its body is larger than `max_body`.
    pub fn too_large(&self) {
        count(&self.route, Outcome::TooLarge);
    }

    /// Sends `head` (the request as the route's backend gets it) with `body` to the shadow pool
    /// on a task of its own; returns at once. With `on_reply`, the answer is kept (its body up to
    /// `max_body`) and handed to it, or what became of the copy.
    pub fn send(self: &Arc<Self>, mut head: RequestHeader, body: Bytes, on_reply: Option<OnReply>) {
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            count(&self.route, Outcome::Dropped);
            if let Some(on_reply) = on_reply {
                on_reply(Reply::NotSent);
            }
            return;
        };
        for name in [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "te",
            "upgrade",
            "expect",
        ] {
            head.remove_header(name);
        }
        let has_body = !body.is_empty() || head.headers.contains_key(http::header::CONTENT_LENGTH);
        if has_body && head.insert_header(http::header::CONTENT_LENGTH, body.len()).is_err() {
            count(&self.route, Outcome::Failed);
            if let Some(on_reply) = on_reply {
                on_reply(Reply::NotSent);
            }
            return;
        }
        let mirror = Arc::clone(self);
        tokio::spawn(async move {
            let keep = on_reply.is_some();
            let (outcome, answer) = match tokio::time::timeout(MIRROR_TIMEOUT, mirror.exchange(head, body, keep)).await
            {
                Ok(Ok(answer)) => (Outcome::Answered, answer),
                Ok(Err(why)) => {
                    log::debug!("mirror of route {}: {why}", mirror.route);
                    (Outcome::Failed, None)
                }
                Err(_) => (Outcome::Timeout, None),
            };
            count(&mirror.route, outcome);
            drop(slot);
            if let Some(on_reply) = on_reply {
                on_reply(answer.map_or(Reply::NoAnswer, Reply::Answer));
            }
        });
    }

    /// One copy: a backend of the shadow pool, the request, its answer read to the end (and
    /// kept when `keep`).
    async fn exchange(&self, head: RequestHeader, body: Bytes, keep: bool) -> Result<Option<Answer>, String> {
        let picked = self
            .pool
            .pick_now(b"", &[])
            .ok_or_else(|| format!("pool {}: no usable backend", self.pool.name))?;
        let peer = self
            .pool
            .peer(&picked.backend, false, Some(MIRROR_TIMEOUT))
            .ok_or("the backend is not an IP address")?;
        let (mut session, _) = self
            .connector
            .get_http_session(&*peer)
            .await
            .map_err(|e| e.to_string())?;
        session
            .write_request_header(Box::new(head))
            .await
            .map_err(|e| e.to_string())?;
        if !body.is_empty() {
            session
                .write_request_body(body, true)
                .await
                .map_err(|e| e.to_string())?;
        }
        session.finish_request_body().await.map_err(|e| e.to_string())?;
        session.read_response_header().await.map_err(|e| e.to_string())?;
        let mut answer = keep
            .then(|| session.response_header())
            .flatten()
            .map(|resp| (resp.status.as_u16(), resp.headers.clone(), BytesMut::new(), true));
        while let Some(piece) = session.read_response_body().await.map_err(|e| e.to_string())? {
            if let Some((_, _, body, whole)) = &mut answer {
                if *whole && body.len() + piece.len() <= self.max_body {
                    body.extend_from_slice(&piece);
                } else {
                    *whole = false;
                    body.clear();
                }
            }
        }
        if session.response_done() {
            self.connector.release_http_session(session, &*peer, None).await;
        }
        drop(picked);
        Ok(answer.map(|(status, headers, body, body_whole)| Answer {
            status,
            headers,
            body: body.freeze(),
            body_whole,
        }))
    }
}

/// A uniform draw in [0, 1) from the thread's generator.
fn rand_unit() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        // xorshift64*: plenty for sampling.
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// A seed from the standard library's per-process random keys (never zero).
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish() | 1
}

#[cfg(test)]
mod tests {
    use super::rand_unit;

    #[test]
    fn draws_are_uniform_enough_for_sampling() {
        let n = 100_000;
        let below = (0..n).filter(|_| rand_unit() < 0.1).count();
        assert!((9_000..11_000).contains(&below), "{below}");
        assert!((0..1000).map(|_| rand_unit()).all(|x| (0.0..1.0).contains(&x)));
    }
}
